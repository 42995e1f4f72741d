//! The token features spaCy's tok2vec reads: NORM, PREFIX, SUFFIX, SHAPE, SPACY, IS_SPACE.

use crate::symbols::string_id;

/// Feature columns per token, in the order of the tok2vec's `extract_features`.
pub const FEATURES: usize = 6;

/// Appends one token's six features: string ids (hashes) of the norm, first character, last three
/// characters and shape, then the trailing-space and is-space flags.
pub fn push_features(text: &str, norm: &str, space_after: bool, out: &mut Vec<u64>) {
    let prefix_end = text.char_indices().nth(1).map_or(text.len(), |(i, _)| i);
    let suffix_start = text.char_indices().rev().nth(2).map_or(0, |(i, _)| i);
    out.push(string_id(norm));
    out.push(string_id(&text[..prefix_end]));
    out.push(string_id(&text[suffix_start..]));
    out.push(string_id(&word_shape(text)));
    out.push(u64::from(space_after));
    out.push(u64::from(is_space(text)));
}

/// spaCy's `BASE_NORMS` (spacy/lang/norm_exceptions.py, MIT): the lexeme NORM of these texts
/// (quotes, dashes, ellipsis, currency signs) instead of the lowercase form. spaCy adds them to
/// every language's vocabulary; they are not in the model files.
const BASE_NORMS: [(&str, &str); 45] = [
    ("'s", "'s"),
    ("'S", "'s"),
    ("’s", "'s"),
    ("’S", "'s"),
    ("’", "'"),
    ("‘", "'"),
    ("´", "'"),
    ("`", "'"),
    ("”", "\""),
    ("“", "\""),
    ("''", "\""),
    ("``", "\""),
    ("´´", "\""),
    ("„", "\""),
    ("»", "\""),
    ("«", "\""),
    ("‘‘", "\""),
    ("’’", "\""),
    ("？", "?"),
    ("！", "!"),
    ("，", ","),
    ("；", ";"),
    ("：", ":"),
    ("。", "."),
    ("।", "."),
    ("…", "..."),
    ("—", "-"),
    ("–", "-"),
    ("--", "-"),
    ("---", "-"),
    ("——", "-"),
    ("€", "$"),
    ("£", "$"),
    ("¥", "$"),
    ("฿", "$"),
    ("US$", "$"),
    ("C$", "$"),
    ("A$", "$"),
    ("₺", "$"),
    ("₹", "$"),
    ("৳", "$"),
    ("₩", "$"),
    ("Mex$", "$"),
    ("₣", "$"),
    ("E£", "$"),
];

/// The NORM of a token without an exception NORM: a base norm, else the lowercase text.
pub fn lexeme_norm(text: &str) -> std::borrow::Cow<'_, str> {
    match BASE_NORMS.iter().find(|(k, _)| *k == text) {
        Some((_, norm)) => std::borrow::Cow::Borrowed(norm),
        None => std::borrow::Cow::Owned(text.to_lowercase()),
    }
}

/// Python's `str.isspace` on a whole string.
pub fn is_space(text: &str) -> bool {
    !text.is_empty() && text.chars().all(crate::tokenizer::is_py_space)
}

/// spaCy's `word_shape`: letters become X/x, digits d, runs capped at four.
pub fn word_shape(text: &str) -> String {
    if text.chars().count() >= 100 {
        return "LONG".to_string();
    }
    let mut shape = String::with_capacity(text.len());
    let mut last = None;
    let mut run = 0;
    for c in text.chars() {
        let s = if is_py_alpha(c) {
            if c.is_uppercase() {
                'X'
            } else {
                'x'
            }
        } else if is_py_digit(c) {
            'd'
        } else {
            c
        };
        if Some(s) == last {
            run += 1;
        } else {
            run = 0;
            last = Some(s);
        }
        if run < 4 {
            shape.push(s);
        }
    }
    shape
}

/// Python's `str.isalpha` for one character: a letter, which excludes the letter numbers
/// (Roman numerals and the like) that Rust counts as alphabetic.
pub fn is_py_alpha(c: char) -> bool {
    c.is_alphabetic()
        && !matches!(c, '\u{16ee}'..='\u{16f0}' | '\u{2160}'..='\u{2188}' | '\u{3007}'
            | '\u{3021}'..='\u{3029}' | '\u{3038}'..='\u{303a}' | '\u{10140}'..='\u{10174}'
            | '\u{10341}' | '\u{1034a}' | '\u{103d1}'..='\u{103d5}' | '\u{12400}'..='\u{1246e}')
}

/// Python's `str.isdigit` for one character, close enough: numeric characters other than
/// letter numbers (Roman numerals) and vulgar fractions.
fn is_py_digit(c: char) -> bool {
    c.is_ascii_digit()
        || (c.is_numeric()
            && !matches!(c, '\u{bc}'..='\u{be}' | '\u{2150}'..='\u{2189}' | '\u{3007}' | '\u{3021}'..='\u{3029}'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::hash_string;

    #[test]
    fn shapes_match_spacy() {
        assert_eq!(word_shape("L'"), "X'");
        assert_eq!(word_shape("aujourd'hui"), "xxxx'xxx");
        assert_eq!(word_shape("Jean-Pierre"), "Xxxx-Xxxxx");
        assert_eq!(word_shape("2024"), "dddd");
        assert_eq!(word_shape("3,5"), "d,d");
        assert_eq!(word_shape("ÉCOLE"), "XXXX");
        assert_eq!(word_shape(&"a".repeat(100)), "LONG");
        assert_eq!(word_shape("Ⅻ²½"), "Ⅻd½");
    }

    #[test]
    fn features_are_six_per_token() {
        let mut out = Vec::new();
        push_features("école", "école", true, &mut out);
        assert_eq!(out.len(), FEATURES);
        assert_eq!(out[0], hash_string("école"));
        assert_eq!(out[1], hash_string("é"));
        assert_eq!(out[2], hash_string("ole"));
        assert_eq!(out[4], 1);
        assert_eq!(out[5], 0);
    }
}
