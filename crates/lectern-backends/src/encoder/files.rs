//! What a sentence-transformers folder says about its model: the architecture, the sequence
//! length, the pooling and whether vectors are normalised.

use super::bundle::Files;
use serde_json::{Map, Value};

/// How token vectors become one vector per text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    Mean,
    Cls,
    Max,
}

impl Pooling {
    pub fn as_str(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Max => "max",
        }
    }
}

/// The architecture families the encoder runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// BERT, MiniLM and other `model_type = "bert"` models.
    Bert,
    /// RoBERTa, XLM-R, CamemBERT: positions start after the padding id.
    Roberta,
}

/// The encoder's settings, read from its files.
#[derive(Debug, Clone)]
pub struct Settings {
    pub family: Family,
    /// `config.json` with the defaults the model code needs filled in.
    pub config: Value,
    pub hidden_size: usize,
    pub vocab_size: usize,
    pub pad_token_id: u32,
    /// Most tokens per text, special tokens included.
    pub max_tokens: usize,
    pub lower_case: bool,
    pub pooling: Pooling,
    pub normalize: bool,
}

/// Reads the settings from a bundle's files.
pub fn settings(files: &Files) -> Result<Settings, String> {
    let mut config = json_file(files, "config.json")?.ok_or("the folder has no config.json")?;
    let object = config.as_object_mut().ok_or("config.json is not a JSON object")?;
    let model_type = object.get("model_type").and_then(Value::as_str).unwrap_or("bert").to_string();
    let family = match model_type.as_str() {
        "bert" => Family::Bert,
        "roberta" | "xlm-roberta" | "camembert" => Family::Roberta,
        other => {
            return Err(format!(
                "config.json model_type '{other}' is not supported (bert, roberta, xlm-roberta, camembert)"
            ))
        }
    };
    fill_defaults(object, family);
    let number = |key: &str| -> Result<usize, String> {
        object
            .get(key)
            .and_then(Value::as_u64)
            .map(|n| n as usize)
            .ok_or_else(|| format!("config.json has no whole number '{key}'"))
    };
    let hidden_size = number("hidden_size")?;
    let vocab_size = number("vocab_size")?;
    let positions = number("max_position_embeddings")?;
    let pad_token_id = number("pad_token_id")? as u32;
    // RoBERTa positions start at padding id + 1, so two positions are never used by tokens.
    let position_limit = match family {
        Family::Bert => positions,
        Family::Roberta => positions.saturating_sub(pad_token_id as usize + 1),
    };
    let st = json_file(files, "sentence_bert_config.json")?;
    let st_max = st.as_ref().and_then(|v| v.get("max_seq_length")).and_then(Value::as_u64).map(|n| n as usize);
    let max_tokens = st_max.unwrap_or(position_limit).min(position_limit);
    if max_tokens < 2 {
        return Err(format!("the sequence length {max_tokens} leaves no room for text"));
    }
    let lower_case = st.as_ref().and_then(|v| v.get("do_lower_case")).and_then(Value::as_bool).unwrap_or(false);
    let (pooling, normalize) = modules(files)?;
    Ok(Settings { family, config, hidden_size, vocab_size, pad_token_id, max_tokens, lower_case, pooling, normalize })
}

/// The values the model code requires that many `config.json` files leave out.
fn fill_defaults(object: &mut Map<String, Value>, family: Family) {
    let (pad, type_vocab) = match family {
        Family::Bert => (0, 2),
        Family::Roberta => (1, 1),
    };
    let defaults = [
        ("hidden_act", Value::from("gelu")),
        ("hidden_dropout_prob", Value::from(0.1)),
        ("attention_probs_dropout_prob", Value::from(0.1)),
        ("initializer_range", Value::from(0.02)),
        ("layer_norm_eps", Value::from(1e-12)),
        ("pad_token_id", Value::from(pad)),
        ("type_vocab_size", Value::from(type_vocab)),
        ("position_embedding_type", Value::from("absolute")),
        ("classifier_dropout", Value::Null),
    ];
    for (key, value) in defaults {
        object.entry(key).or_insert(value);
    }
    // The names transformers uses for the tanh approximation of GELU.
    let act = object.get("hidden_act").and_then(Value::as_str).map(str::to_string);
    if let Some(act) = act {
        let bert_name = match act.as_str() {
            "gelu" => "gelu",
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" | "gelu_approximate" => "gelu_approximate",
            "relu" => "relu",
            _ => act.as_str(),
        };
        let name = if family == Family::Bert { bert_name.to_string() } else { act.clone() };
        object.insert("hidden_act".into(), Value::from(name));
    }
}

/// Pooling and normalisation from `modules.json` and the pooling module's config; a folder
/// without `modules.json` is a plain model: mean pooling, not normalised (as
/// sentence-transformers loads one).
fn modules(files: &Files) -> Result<(Pooling, bool), String> {
    let Some(list) = json_file(files, "modules.json")? else {
        return Ok((Pooling::Mean, false));
    };
    let list = list.as_array().ok_or("modules.json is not a list")?;
    let mut pooling = None;
    let mut normalize = false;
    for module in list {
        let kind = module.get("type").and_then(Value::as_str).unwrap_or("");
        let kind = kind.rsplit('.').next().unwrap_or(kind);
        let path = module.get("path").and_then(Value::as_str).unwrap_or("");
        match kind {
            "Transformer" => {}
            "Pooling" => pooling = Some(pooling_of(files, path)?),
            "Normalize" => normalize = true,
            other => {
                return Err(format!(
                    "modules.json lists a '{other}' module: only Transformer, Pooling and Normalize are supported"
                ))
            }
        }
    }
    Ok((pooling.unwrap_or(Pooling::Mean), normalize))
}

fn pooling_of(files: &Files, path: &str) -> Result<Pooling, String> {
    let file =
        if path.is_empty() { "config.json".to_string() } else { format!("{}/config.json", path.trim_end_matches('/')) };
    let Some(config) = json_file(files, &file)? else {
        return Ok(Pooling::Mean);
    };
    let on = |key: &str| config.get(key).and_then(Value::as_bool).unwrap_or(false);
    let chosen: Vec<Pooling> = [
        ("pooling_mode_mean_tokens", Pooling::Mean),
        ("pooling_mode_cls_token", Pooling::Cls),
        ("pooling_mode_max_tokens", Pooling::Max),
    ]
    .into_iter()
    .filter(|(key, _)| on(key))
    .map(|(_, p)| p)
    .collect();
    let unsupported =
        ["pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken"];
    if let Some(key) = unsupported.iter().find(|k| on(k)) {
        return Err(format!("{file}: {key} is not supported (mean, cls or max pooling)"));
    }
    match chosen.as_slice() {
        [] => Ok(Pooling::Mean),
        [one] => Ok(*one),
        _ => Err(format!("{file} turns on several pooling modes; Lectern supports one")),
    }
}

fn json_file(files: &Files, name: &str) -> Result<Option<Value>, String> {
    match files.get(name) {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(bytes).map(Some).map_err(|e| format!("{name} is not valid JSON: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(entries: &[(&str, &str)]) -> Files {
        entries.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect()
    }

    const BERT: &str = r#"{"model_type": "bert", "hidden_size": 8, "vocab_size": 30, "max_position_embeddings": 512,
        "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16}"#;

    #[test]
    fn sentence_transformers_files_set_length_pooling_and_normalisation() {
        let s = settings(&files(&[
            ("config.json", BERT),
            ("sentence_bert_config.json", r#"{"max_seq_length": 256, "do_lower_case": false}"#),
            (
                "modules.json",
                r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
                {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
                {"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]"#,
            ),
            (
                "1_Pooling/config.json",
                r#"{"word_embedding_dimension": 8, "pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#,
            ),
        ]))
        .unwrap();
        assert_eq!((s.max_tokens, s.pooling, s.normalize, s.family), (256, Pooling::Cls, true, Family::Bert));
        assert_eq!(s.config["hidden_act"], "gelu");
    }

    #[test]
    fn a_plain_model_pools_by_mean_over_its_positions_and_roberta_loses_two() {
        let plain = settings(&files(&[("config.json", BERT)])).unwrap();
        assert_eq!((plain.max_tokens, plain.pooling, plain.normalize), (512, Pooling::Mean, false));
        let roberta = BERT.replace("\"bert\"", "\"camembert\"").replace("512", "514");
        let r = settings(&files(&[("config.json", &roberta)])).unwrap();
        assert_eq!((r.family, r.max_tokens, r.pad_token_id), (Family::Roberta, 512, 1));
    }

    #[test]
    fn unsupported_modules_and_architectures_are_refused_by_name() {
        let dense = settings(&files(&[
            ("config.json", BERT),
            ("modules.json", r#"[{"path":"2_Dense","type":"sentence_transformers.models.Dense"}]"#),
        ]))
        .unwrap_err();
        assert!(dense.contains("'Dense'"), "{dense}");
        let gpt = settings(&files(&[("config.json", r#"{"model_type": "gpt2"}"#)])).unwrap_err();
        assert!(gpt.contains("gpt2"), "{gpt}");
        assert!(settings(&files(&[])).unwrap_err().contains("config.json"));
    }
}
