//! Words from a photo: the results of `ocr` steps (an OCR model's page), `analyze` steps (a
//! French analysis model's sentences and tokens, each token with the OCR confidence of the word
//! it came from) and `lookup` steps (each word's lemma in a collection: the exact lemma first,
//! then the nearest entry by meaning).

use crate::run::type_name;
use serde_json::{json, Map, Value as Json};
use std::collections::{BTreeMap, BTreeSet};

/// Most lemmas asked for in one exact search (a search gives at most 1000 results).
const LEMMAS_PER_SEARCH: usize = 100;
/// Most words one lookup step looks up.
pub const MAX_LOOKUP_WORDS: usize = 1000;

/// An `ocr` step's result from the model's `page` output: `{"model", "text", "confidence",
/// "lines": [{"text", "words": [..]}], "words": [every word in reading order]}`.
pub fn ocr_result(model: &str, page: &[u8]) -> Result<Json, String> {
    let mut page: Map<String, Json> =
        serde_json::from_slice(page).map_err(|e| format!("the OCR model gave a page that is not JSON ({e})"))?;
    let words: Vec<Json> = page
        .get("lines")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .flat_map(|(line, l)| {
            l.get("words").and_then(Json::as_array).cloned().unwrap_or_default().into_iter().map(move |mut w| {
                w["line"] = json!(line);
                w
            })
        })
        .collect();
    page.insert("words".into(), Json::Array(words));
    page.insert("model".into(), json!(model));
    Ok(Json::Object(page))
}

/// The text an `analyze` step reads, and the OCR words it came from (when it is an `ocr` step's
/// result, or an object with `text` and `words`).
pub fn analysis_input(value: &Json) -> Result<(String, Vec<Json>), String> {
    match value {
        Json::String(text) => Ok((text.clone(), Vec::new())),
        Json::Object(o) => match o.get("text") {
            Some(Json::String(text)) => {
                let words = o.get("words").and_then(Json::as_array).cloned().unwrap_or_default();
                Ok((text.clone(), words))
            }
            _ => Err("its text must be a string or an ocr step's result (an object with a text)".into()),
        },
        other => Err(format!("its text must be a string or an ocr step's result, not {}", type_name(other))),
    }
}

/// An `analyze` step's result from the model's `analysis` output (sentences of tokens):
/// `{"model", "text", "sentences": [{"text", "start", "end"}], "tokens": [..]}`, the tokens
/// without the spaces, each with its `sentence`, and, when OCR words are given, the
/// `confidence` and `box` of the word it lies in.
pub fn analysis_result(model: &str, text: &str, analysis: &[u8], words: &[Json]) -> Result<Json, String> {
    let sentences: Vec<Json> = serde_json::from_slice(analysis)
        .map_err(|e| format!("the analysis model gave an answer that is not JSON ({e})"))?;
    let spans: Vec<(u64, u64, &Json)> =
        words.iter().filter_map(|w| Some((w.get("start")?.as_u64()?, w.get("end")?.as_u64()?, w))).collect();
    let mut tokens = Vec::new();
    let mut outline = Vec::new();
    for (index, sentence) in sentences.iter().enumerate() {
        outline.push(json!({
            "text": sentence.get("text"), "start": sentence.get("start"), "end": sentence.get("end"),
        }));
        for token in sentence.get("tokens").and_then(Json::as_array).into_iter().flatten() {
            if token.get("is_space").and_then(Json::as_bool) == Some(true) {
                continue;
            }
            let mut token = token.clone();
            token["sentence"] = json!(index);
            if let Some(word) = token.get("start").and_then(Json::as_u64).and_then(|s| word_at(&spans, s)) {
                token["confidence"] = word.get("confidence").cloned().unwrap_or(Json::Null);
                token["box"] = json!({
                    "left": word.get("left"), "top": word.get("top"),
                    "width": word.get("width"), "height": word.get("height"),
                });
            }
            tokens.push(token);
        }
    }
    Ok(json!({ "model": model, "text": text, "sentences": outline, "tokens": tokens }))
}

/// The OCR word whose byte range holds `offset`.
fn word_at<'a>(spans: &[(u64, u64, &'a Json)], offset: u64) -> Option<&'a Json> {
    let i = spans.partition_point(|&(_, end, _)| end <= offset);
    spans.get(i).filter(|&&(start, _, _)| start <= offset).map(|&(_, _, w)| w)
}

/// One word a `lookup` step looks up.
#[derive(Debug, Clone)]
pub struct Wanted {
    /// The token as the analysis gave it (text, lemma, pos, confidence, box, ...).
    pub token: Map<String, Json>,
    /// The lemma, lower case: the key in the collection.
    pub key: String,
}

/// The words of a `lookup` step's `words` value (an `analyze` step's result, or a list of its
/// tokens, or a list of plain words), in order, leaving out punctuation, spaces and tokens
/// without a letter.
pub fn wanted_words(value: &Json) -> Result<Vec<Wanted>, String> {
    let list = match value {
        Json::Object(o) => o
            .get("tokens")
            .and_then(Json::as_array)
            .ok_or("its words must be an analyze step's result (with tokens) or a list")?,
        Json::Array(list) => list,
        other => return Err(format!("its words must be an analyze step's result or a list, not {}", type_name(other))),
    };
    let mut wanted = Vec::new();
    for item in list {
        let token = match item {
            Json::String(word) => {
                let mut t = Map::new();
                t.insert("text".into(), json!(word));
                t.insert("lemma".into(), json!(word));
                t
            }
            Json::Object(o) => o.clone(),
            other => return Err(format!("each word must be text or a token object, not {}", type_name(other))),
        };
        let flag = |name: &str| token.get(name).and_then(Json::as_bool) == Some(true);
        let text = token.get("text").and_then(Json::as_str).unwrap_or("");
        if flag("is_punct") || flag("is_space") || !text.chars().any(char::is_alphabetic) {
            continue;
        }
        let lemma = token.get("lemma").and_then(Json::as_str).filter(|l| !l.is_empty()).unwrap_or(text);
        wanted.push(Wanted { key: lemma.to_lowercase(), token });
        if wanted.len() > MAX_LOOKUP_WORDS {
            return Err(format!("it has more than {MAX_LOOKUP_WORDS} words to look up"));
        }
    }
    Ok(wanted)
}

/// The queries of the exact pass: the distinct keys, a few hundred per search, each query
/// `{"text", "k", "filter": {field: {"$in": [..]}}}`.
pub fn exact_queries(wanted: &[Wanted], field: &str) -> Vec<Json> {
    let keys: BTreeSet<&str> = wanted.iter().map(|w| w.key.as_str()).collect();
    let keys: Vec<&str> = keys.into_iter().collect();
    keys.chunks(LEMMAS_PER_SEARCH)
        .map(|chunk| json!({ "text": chunk[0], "k": 1000, "filter": { field: { "$in": chunk } } }))
        .collect()
}

/// The entries of the exact pass by key (several when a lemma has entries for several parts
/// of speech).
pub fn entries_by_key(results: &[Json], field: &str) -> BTreeMap<String, Vec<Json>> {
    let mut found: BTreeMap<String, Vec<Json>> = BTreeMap::new();
    for hit in results {
        if let Some(key) = hit.get("metadata").and_then(|m| m.get(field)).and_then(Json::as_str) {
            found.entry(key.to_lowercase()).or_default().push(hit.clone());
        }
    }
    found
}

/// How a word was found.
pub enum Found<'a> {
    Exact(&'a Json),
    Nearest(&'a Json),
    Unknown,
}

/// One word of a `lookup` step's result: the token's text, lemma, part of speech, confidence
/// and box, with `match` ("exact", "nearest" or "unknown"), `score` (the nearest entry's
/// similarity; null otherwise) and `entry` (the collection item, or null).
pub fn looked_up(wanted: &Wanted, found: Found<'_>) -> Json {
    let field = |name: &str| wanted.token.get(name).cloned().unwrap_or(Json::Null);
    let (how, entry) = match found {
        Found::Exact(hit) => ("exact", Some(hit)),
        Found::Nearest(hit) => ("nearest", Some(hit)),
        Found::Unknown => ("unknown", None),
    };
    let entry_json =
        entry.map(|hit| json!({ "id": hit.get("id"), "text": hit.get("text"), "metadata": hit.get("metadata") }));
    json!({
        "word": field("text"),
        "lemma": field("lemma"),
        "pos": field("pos"),
        "confidence": field("confidence"),
        "box": field("box"),
        "match": how,
        // the similarity of the entry nearest in meaning; an exact match has none
        "score": entry.filter(|_| how == "nearest").and_then(|h| h.get("score").cloned()),
        "entry": entry_json,
    })
}

/// Of the exact entries for a word, the one with its part of speech, else the first.
pub fn best_entry<'a>(entries: &'a [Json], pos: Option<&str>, pos_field: &str) -> Option<&'a Json> {
    let has_pos = |e: &Json, p: &str| {
        e.get("metadata")
            .and_then(|m| m.get(pos_field))
            .and_then(Json::as_str)
            .is_some_and(|q| q.eq_ignore_ascii_case(p))
    };
    pos.and_then(|p| entries.iter().find(|e| has_pos(e, p))).or(entries.first())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> Vec<u8> {
        serde_json::to_vec(&json!({
            "text": "L'école est\nbelle.",
            "confidence": 90.0,
            "lines": [
                {"text": "L'école est", "words": [
                    {"text": "L'école", "confidence": 95.0, "left": 1, "top": 2, "width": 3, "height": 4, "start": 0, "end": 8},
                    {"text": "est", "confidence": 91.0, "left": 5, "top": 2, "width": 3, "height": 4, "start": 9, "end": 12}]},
                {"text": "belle.", "words": [
                    {"text": "belle.", "confidence": 60.5, "left": 1, "top": 9, "width": 3, "height": 4, "start": 13, "end": 19}]}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn tokens_get_the_confidence_of_the_ocr_word_they_lie_in() {
        let ocr = ocr_result("reader", &page()).unwrap();
        assert_eq!(ocr["words"].as_array().unwrap().len(), 3);
        assert_eq!(ocr["words"][2]["line"], 1);
        let (text, words) = analysis_input(&ocr).unwrap();
        let token = |t: &str, s: usize, lemma: &str, pos: &str, punct: bool| json!({"text": t, "start": s, "end": s + t.len(), "lemma": lemma, "pos": pos, "is_punct": punct, "is_space": false});
        let analysis = serde_json::to_vec(&json!([{ "text": text, "start": 0, "end": 19, "tokens": [
            token("L'", 0, "le", "DET", false), token("école", 2, "école", "NOUN", false),
            token("est", 9, "être", "AUX", false),
            {"text": "\n", "start": 12, "end": 13, "lemma": "\n", "pos": "SPACE", "is_punct": false, "is_space": true},
            token("belle", 13, "beau", "ADJ", false), token(".", 18, ".", "PUNCT", true),
        ]}]))
        .unwrap();
        let result = analysis_result("french", &text, &analysis, &words).unwrap();
        let tokens = result["tokens"].as_array().unwrap();
        assert_eq!(tokens.len(), 5, "the space is left out");
        assert_eq!(tokens[1]["confidence"], 95.0);
        assert_eq!(tokens[2]["confidence"], 91.0);
        assert_eq!(tokens[3]["confidence"], 60.5);
        assert_eq!(tokens[3]["box"]["top"], 9);
        let wanted = wanted_words(&result).unwrap();
        let keys: Vec<&str> = wanted.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(keys, ["le", "école", "être", "beau"]);
        let queries = exact_queries(&wanted, "lemma");
        assert_eq!(queries.len(), 1);
        assert_eq!(queries[0]["filter"]["lemma"]["$in"], json!(["beau", "le", "école", "être"]));
    }

    #[test]
    fn plain_text_has_no_confidence_and_bad_values_are_refused() {
        let analysis = serde_json::to_vec(&json!([{ "text": "Chat", "start": 0, "end": 4, "tokens": [
            {"text": "Chat", "start": 0, "end": 4, "lemma": "chat", "pos": "NOUN", "is_punct": false, "is_space": false}]}]))
        .unwrap();
        let result = analysis_result("french", "Chat", &analysis, &[]).unwrap();
        assert!(result["tokens"][0].get("confidence").is_none());
        assert!(analysis_input(&json!(3)).is_err());
        assert!(wanted_words(&json!("text")).is_err());
        assert_eq!(wanted_words(&json!(["Chats", "42", "!"])).unwrap().len(), 1);
        assert!(ocr_result("r", b"not json").is_err());
    }

    #[test]
    fn the_entry_with_the_words_part_of_speech_is_preferred() {
        let entries = vec![
            json!({"id": "est-noun", "metadata": {"lemma": "est", "pos": "NOUN"}}),
            json!({"id": "etre-aux", "metadata": {"lemma": "est", "pos": "AUX"}}),
        ];
        assert_eq!(best_entry(&entries, Some("AUX"), "pos").unwrap()["id"], "etre-aux");
        assert_eq!(best_entry(&entries, Some("VERB"), "pos").unwrap()["id"], "est-noun");
        assert_eq!(best_entry(&entries, None, "pos").unwrap()["id"], "est-noun");
        let by_key = entries_by_key(&entries, "lemma");
        assert_eq!(by_key["est"].len(), 2);
    }
}
