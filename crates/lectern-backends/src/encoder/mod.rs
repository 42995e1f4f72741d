//! Sentence-transformers text encoders (BERT, MiniLM, RoBERTa, CamemBERT, XLM-R) from
//! safetensors on candle, tokenised with Hugging Face `tokenizers`: texts in, one vector per
//! text out.
//!
//! A model arrives as a [`bundle`] (a tar of the folder's files). Texts are tokenised without
//! the truncation or padding that `tokenizer.json` carries; the sequence length is the
//! sentence-transformers one. A batch is sorted by length and run in groups of similar length
//! so that padding stays small; answers keep the request's order.

pub mod bundle;
pub mod files;

use crate::{Backend, BackendError, Session, Signature, TensorInfo, TextEncoding};
use candle_core::{DType, Device, Tensor as CTensor};
use candle_nn::VarBuilder;
use candle_transformers::models::{bert, xlm_roberta};
use files::{Family, Pooling, Settings};
use lectern_core::{DataType, Tensor, TensorData};
use std::sync::Arc;
use tokenizers::{Tokenizer, TruncationParams};

/// The input holding one text per row.
pub const TEXT_INPUT: &str = "text";
/// The output holding one vector per row.
pub const EMBEDDING_OUTPUT: &str = "embedding";
/// The output holding each text's token count (special tokens included, before truncation).
pub const TOKEN_COUNT_OUTPUT: &str = "token_count";
/// The platform model metadata names.
pub const PLATFORM: &str = "sentence_transformers";

/// Most rows run in one forward pass.
const MAX_GROUP_ROWS: usize = 32;
/// Most padded tokens in one forward pass (bounds the attention matrices' memory).
const MAX_GROUP_TOKENS: usize = 4096;

enum Network {
    Bert(bert::BertModel),
    Roberta(xlm_roberta::XLMRobertaModel),
}

impl Network {
    fn load(settings: &Settings, weights: Vec<u8>) -> Result<Network, String> {
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(|e| format!("model.safetensors cannot be read: {e}"))?;
        let weights_error = |e: candle_core::Error| format!("the weights do not fit config.json: {e}");
        match settings.family {
            Family::Bert => {
                let config: bert::Config = serde_json::from_value(settings.config.clone())
                    .map_err(|e| format!("config.json does not describe a BERT model: {e}"))?;
                bert::BertModel::load(vb, &config).map(Network::Bert).map_err(weights_error)
            }
            Family::Roberta => {
                let config: xlm_roberta::Config = serde_json::from_value(settings.config.clone())
                    .map_err(|e| format!("config.json does not describe a RoBERTa model: {e}"))?;
                let vb =
                    if vb.contains_tensor("roberta.embeddings.word_embeddings.weight") { vb.pp("roberta") } else { vb };
                xlm_roberta::XLMRobertaModel::new(&config, vb).map(Network::Roberta).map_err(weights_error)
            }
        }
    }

    /// The last hidden state `[rows, tokens, hidden]`.
    fn forward(&self, ids: &CTensor, types: &CTensor, mask: &CTensor) -> candle_core::Result<CTensor> {
        match self {
            Network::Bert(m) => m.forward(ids, types, Some(mask)),
            Network::Roberta(m) => m.forward(ids, mask, types, None, None, None),
        }
    }
}

/// What every instance of one encoder shares (the weights are read-only).
struct Encoder {
    network: Network,
    /// Without truncation: counts tokens.
    counting: Tokenizer,
    /// Truncating to the sequence length: for texts over it.
    truncating: Tokenizer,
    settings: Settings,
}

/// One text, tokenised.
struct Tokens {
    ids: Vec<u32>,
    /// Before truncation, special tokens included.
    count: usize,
}

impl Encoder {
    fn tokenize(&self, text: &str) -> Result<Tokens, BackendError> {
        let lowered;
        let text = if self.settings.lower_case {
            lowered = text.to_lowercase();
            lowered.as_str()
        } else {
            text
        };
        let failed = |e: tokenizers::Error| BackendError::Inference(format!("tokenizing failed: {e}"));
        let full = self.counting.encode(text, true).map_err(failed)?;
        let count = full.get_ids().len();
        if count <= self.settings.max_tokens {
            return Ok(Tokens { ids: full.get_ids().to_vec(), count });
        }
        let cut = self.truncating.encode(text, true).map_err(failed)?;
        Ok(Tokens { ids: cut.get_ids().to_vec(), count })
    }

    /// One vector per text (in the texts' order) and each text's token count.
    fn encode(&self, texts: &[&str]) -> Result<(Vec<f32>, Vec<i64>), BackendError> {
        let tokens = texts.iter().map(|t| self.tokenize(t)).collect::<Result<Vec<_>, _>>()?;
        let width = self.settings.hidden_size;
        let mut vectors = vec![0f32; texts.len() * width];
        for group in groups(&tokens) {
            let pooled = self.run_group(&tokens, &group).map_err(|e| BackendError::Inference(e.to_string()))?;
            for (slot, &row) in group.iter().enumerate() {
                vectors[row * width..(row + 1) * width].copy_from_slice(&pooled[slot * width..(slot + 1) * width]);
            }
        }
        if self.settings.normalize {
            vectors.chunks_mut(width).for_each(normalize);
        }
        Ok((vectors, tokens.iter().map(|t| t.count as i64).collect()))
    }

    /// Runs the rows `group` (indices into `tokens`) padded to the longest; pooled vectors in
    /// the group's order.
    fn run_group(&self, tokens: &[Tokens], group: &[usize]) -> candle_core::Result<Vec<f32>> {
        let rows = group.len();
        let len = group.iter().map(|&r| tokens[r].ids.len()).max().unwrap_or(0);
        let mut ids = vec![self.settings.pad_token_id; rows * len];
        let mut mask = vec![0u32; rows * len];
        for (slot, &row) in group.iter().enumerate() {
            let row_ids = &tokens[row].ids;
            ids[slot * len..slot * len + row_ids.len()].copy_from_slice(row_ids);
            mask[slot * len..slot * len + row_ids.len()].fill(1);
        }
        let device = Device::Cpu;
        let ids_t = CTensor::from_vec(ids, (rows, len), &device)?;
        let mask_t = CTensor::from_vec(mask.clone(), (rows, len), &device)?;
        let types = ids_t.zeros_like()?;
        let hidden = self.network.forward(&ids_t, &types, &mask_t)?;
        let hidden = hidden.flatten_all()?.to_vec1::<f32>()?;
        Ok(pool(&hidden, &mask, rows, len, self.settings.hidden_size, self.settings.pooling))
    }
}

/// Rows sorted by length, cut into groups of similar length: a group grows while its padded
/// size stays within [`MAX_PADDING`] of its real tokens and within the row and token bounds
/// (one batch padded to its longest text can cost several times its real tokens).
fn groups(tokens: &[Tokens]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..tokens.len()).collect();
    order.sort_by_key(|&r| tokens[r].ids.len());
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut real = 0usize;
    for row in order {
        let len = tokens[row].ids.len();
        match groups.last_mut() {
            // Ascending order: the new row is the longest, so the padded size is rows x len.
            Some(group) if fits(group.len() + 1, len, real + len) => {
                group.push(row);
                real += len;
            }
            _ => {
                groups.push(vec![row]);
                real = len;
            }
        }
    }
    groups
}

/// Most padded tokens per real token in a group.
const MAX_PADDING: f32 = 1.25;

fn fits(rows: usize, longest: usize, real: usize) -> bool {
    let padded = rows * longest;
    rows <= MAX_GROUP_ROWS && padded <= MAX_GROUP_TOKENS && padded as f32 <= MAX_PADDING * real as f32
}

/// Pools `[rows, len, width]` hidden states over the unmasked tokens into `[rows, width]`.
fn pool(hidden: &[f32], mask: &[u32], rows: usize, len: usize, width: usize, pooling: Pooling) -> Vec<f32> {
    let mut out = vec![0f32; rows * width];
    for r in 0..rows {
        let target = &mut out[r * width..(r + 1) * width];
        let token = |t: usize| &hidden[(r * len + t) * width..(r * len + t + 1) * width];
        let live = || (0..len).filter(move |&t| mask[r * len + t] == 1);
        match pooling {
            Pooling::Cls => target.copy_from_slice(token(0)),
            Pooling::Mean => {
                let mut n = 0f32;
                for t in live() {
                    target.iter_mut().zip(token(t)).for_each(|(a, b)| *a += b);
                    n += 1.0;
                }
                let n = n.max(1e-9);
                target.iter_mut().for_each(|a| *a /= n);
            }
            Pooling::Max => {
                target.fill(f32::NEG_INFINITY);
                for t in live() {
                    target.iter_mut().zip(token(t)).for_each(|(a, &b)| *a = a.max(b));
                }
            }
        }
    }
    out
}

/// Scales a vector to unit length (as torch's `normalize`, which divides by max(norm, 1e-12)).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}

/// A loaded text encoder.
pub struct EncoderBackend {
    encoder: Arc<Encoder>,
    signature: Signature,
    text: TextEncoding,
}

impl EncoderBackend {
    /// Loads an encoder from a bundle (see [`bundle`]).
    pub fn from_bundle(bytes: &[u8]) -> Result<Self, BackendError> {
        Self::load(bytes).map_err(BackendError::Load)
    }

    fn load(bytes: &[u8]) -> Result<Self, String> {
        let mut files = bundle::unpack(bytes)?;
        let settings = files::settings(&files)?;
        let tokenizer_json = files.remove(bundle::TOKENIZER_FILE).ok_or("the folder has no tokenizer.json")?;
        let weights = files.remove(bundle::WEIGHTS_FILE).ok_or("the folder has no model.safetensors")?;
        let (counting, truncating) = tokenizers_for(&tokenizer_json, &settings)?;
        let network = Network::load(&settings, weights)?;
        let width = settings.hidden_size;
        let text = TextEncoding {
            max_tokens: settings.max_tokens,
            dimension: width,
            normalized: settings.normalize,
            pooling: settings.pooling.as_str(),
        };
        let encoder = Arc::new(Encoder { network, counting, truncating, settings });
        // One short text through the whole model: a load that succeeds can serve.
        encoder.encode(&["Lectern"]).map_err(|e| format!("the model cannot run: {e}"))?;
        let signature = Signature {
            inputs: vec![TensorInfo { name: TEXT_INPUT.into(), datatype: DataType::Bytes, shape: vec![-1] }],
            outputs: vec![
                TensorInfo { name: EMBEDDING_OUTPUT.into(), datatype: DataType::F32, shape: vec![-1, width as i64] },
                TensorInfo { name: TOKEN_COUNT_OUTPUT.into(), datatype: DataType::I64, shape: vec![-1] },
            ],
        };
        Ok(EncoderBackend { encoder, signature, text })
    }
}

/// The counting and the truncating tokenizer, without the file's own truncation and padding;
/// refused when its token ids reach past the model's vocabulary (another model's tokenizer).
fn tokenizers_for(json: &[u8], settings: &Settings) -> Result<(Tokenizer, Tokenizer), String> {
    let mut counting = Tokenizer::from_bytes(json).map_err(|e| format!("tokenizer.json cannot be read: {e}"))?;
    counting.with_padding(None);
    counting.with_truncation(None).map_err(|e| format!("tokenizer.json: {e}"))?;
    let largest = counting.get_vocab(true).into_values().max().unwrap_or(0) as usize;
    if largest >= settings.vocab_size {
        return Err(format!(
            "tokenizer.json gives token ids up to {largest} but config.json's vocabulary has {} entries: \
             the tokenizer is not this model's",
            settings.vocab_size
        ));
    }
    let mut truncating = counting.clone();
    let params = TruncationParams { max_length: settings.max_tokens, ..TruncationParams::default() };
    truncating.with_truncation(Some(params)).map_err(|e| format!("tokenizer.json: {e}"))?;
    Ok((counting, truncating))
}

impl Backend for EncoderBackend {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn session(&self) -> Result<Box<dyn Session>, BackendError> {
        Ok(Box::new(EncoderSession { encoder: self.encoder.clone() }))
    }

    fn platform(&self) -> &'static str {
        PLATFORM
    }

    fn text(&self) -> Option<&TextEncoding> {
        Some(&self.text)
    }

    fn check(&self, inputs: &[Tensor]) -> Result<(), BackendError> {
        texts(inputs).map(|_| ())
    }
}

/// The texts of the `text` input: each UTF-8 and not empty.
fn texts(inputs: &[Tensor]) -> Result<Vec<&str>, BackendError> {
    let bad = |message: String| BackendError::BadInput { input: TEXT_INPUT.into(), message };
    let Some(Tensor { data: TensorData::Bytes(rows), .. }) = inputs.first() else {
        return Err(bad("must be BYTES".into()));
    };
    rows.iter()
        .enumerate()
        .map(|(row, bytes)| match std::str::from_utf8(bytes) {
            Err(e) => Err(bad(format!("row {row} is not UTF-8 text ({e})"))),
            Ok("") => Err(bad(format!("row {row} is empty"))),
            Ok(text) => Ok(text),
        })
        .collect()
}

struct EncoderSession {
    encoder: Arc<Encoder>,
}

impl Session for EncoderSession {
    fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
        let texts = texts(&inputs)?;
        let rows = texts.len();
        let (vectors, counts) = self.encoder.encode(&texts)?;
        let width = self.encoder.settings.hidden_size;
        Ok(vec![
            Tensor { name: EMBEDDING_OUTPUT.into(), shape: vec![rows, width], data: TensorData::F32(vectors) },
            Tensor { name: TOKEN_COUNT_OUTPUT.into(), shape: vec![rows], data: TensorData::I64(counts) },
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(lengths: &[usize]) -> Vec<Tokens> {
        lengths.iter().map(|&n| Tokens { ids: vec![1; n], count: n }).collect()
    }

    #[test]
    fn rows_are_grouped_by_length_within_the_row_and_token_bounds() {
        assert_eq!(groups(&tokens(&[9, 8, 10])), vec![vec![1, 0, 2]]);
        // 3 and 5 padded to 5 is 10 tokens for 8 (within 1.25); with 9 it would be 27 for 17.
        assert_eq!(groups(&tokens(&[9, 3, 5])), vec![vec![1, 2], vec![0]]);
        let long = groups(&tokens(&[256; 40]));
        assert_eq!(long.iter().map(Vec::len).collect::<Vec<_>>(), [16, 16, 8]);
        let many = groups(&tokens(&[4; 70]));
        assert_eq!(many.iter().map(Vec::len).collect::<Vec<_>>(), [32, 32, 6]);
    }

    #[test]
    fn pooling_ignores_padding() {
        // Two rows of two tokens, width 2; the second row's second token is padding.
        let hidden = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 100.0, 100.0];
        let mask = [1, 1, 1, 0];
        assert_eq!(pool(&hidden, &mask, 2, 2, 2, Pooling::Mean), [2.0, 3.0, 5.0, 6.0]);
        assert_eq!(pool(&hidden, &mask, 2, 2, 2, Pooling::Max), [3.0, 4.0, 5.0, 6.0]);
        assert_eq!(pool(&hidden, &mask, 2, 2, 2, Pooling::Cls), [1.0, 2.0, 5.0, 6.0]);
    }

    #[test]
    fn texts_must_be_utf8_and_not_empty() {
        let input = |rows: Vec<Vec<u8>>| {
            vec![Tensor { name: "text".into(), shape: vec![rows.len()], data: TensorData::Bytes(rows) }]
        };
        assert_eq!(texts(&input(vec![b"a".to_vec(), "é".into()])).unwrap(), ["a", "é"]);
        let empty = texts(&input(vec![b"a".to_vec(), vec![]])).unwrap_err().to_string();
        assert!(empty.contains("row 1 is empty"), "{empty}");
        let latin1 = texts(&input(vec![vec![0xe9]])).unwrap_err().to_string();
        assert!(latin1.contains("row 0 is not UTF-8"), "{latin1}");
    }

    #[test]
    fn a_bundle_without_weights_or_config_is_refused_with_the_reason() {
        let mut files = bundle::Files::new();
        files.insert("tokenizer.json".into(), b"{}".to_vec());
        let err = EncoderBackend::from_bundle(&bundle::pack(&files).unwrap()).err().unwrap().to_string();
        assert!(err.contains("config.json"), "{err}");
    }
}
