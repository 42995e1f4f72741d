//! Odd input never panics and keeps offsets consistent.

mod support;

use lectern_french::{French, Sentence};
use support::load_or_skip;

/// Offsets are in order, on character boundaries, and the texts are the slices they name.
fn check(text: &str, sentences: &[Sentence]) {
    let mut last = 0;
    for sentence in sentences {
        assert_eq!(&text[sentence.start..sentence.end], sentence.text);
        for token in &sentence.tokens {
            assert!(token.start >= last && token.start < token.end, "{token:?}");
            assert_eq!(&text[token.start..token.end], token.text);
            assert!(!token.pos.is_empty());
            last = token.end;
        }
    }
}

fn run(french: &French, text: &str) -> Vec<Sentence> {
    let sentences = french.analyze(text);
    check(text, &sentences);
    sentences
}

/// A deterministic mix of French, punctuation, digits, emoji, CJK and control characters.
fn random_text(len: usize) -> String {
    let pieces = [
        "l'",
        "é",
        "É",
        "😀",
        "👍🏽",
        "漢字",
        "中文",
        " ",
        "  ",
        "\n",
        "\t",
        "\r\n",
        "\u{0}",
        "\u{1f}",
        "\u{a0}",
        "…",
        "«",
        "»",
        "-",
        "--",
        "'",
        "’",
        ".",
        "?!",
        "3,5",
        "1.000",
        "M.",
        "etc.",
        "(",
        ")",
        "http://x.fr/a?b=c",
        "a@b.fr",
        "#tag",
        "aujourd'hui",
        "peut-être",
        "\u{301}",
        "Ⅻ",
        "ﬁ",
        "ß",
        "İ",
        "ς",
        "\u{200b}",
        "\u{feff}",
        ":)",
        "<3",
        "$",
        "€",
        "%",
        "&",
        "x",
    ];
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut out = String::new();
    while out.chars().count() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.push_str(pieces[(state % pieces.len() as u64) as usize]);
    }
    out
}

#[test]
fn odd_inputs_do_not_panic() {
    let Some(french) = load_or_skip() else {
        return;
    };
    assert!(run(&french, "").is_empty());
    for text in [" ", "   ", "\n", "\n\n \n", " \t ", "a", ".", "😀", "\u{0}"] {
        let sentences = run(&french, text);
        let tokens: Vec<_> = sentences.iter().flat_map(|s| &s.tokens).collect();
        if text.trim().is_empty() {
            assert!(tokens.iter().all(|t| t.is_space && t.pos == "SPACE"), "{text:?}");
        }
    }
    run(&french, &random_text(10_000));
}

#[test]
fn long_text_is_analyzed_whole() {
    let Some(french) = load_or_skip() else {
        return;
    };
    let paragraph = "Le garçon a mangé une crème brûlée à Noël. Où est-ce que vous allez ? \
                     Chez moi, peut-être.\n";
    let text = paragraph.repeat(50_000 / paragraph.len() + 1);
    let sentences = run(&french, &text);
    let words = sentences.iter().flat_map(|s| &s.tokens).filter(|t| !t.is_space).count();
    assert!(words > 5_000);
    // Every repetition but the first and last has the same context, so the same analysis,
    // wherever the chunk boundaries fall.
    let tokens: Vec<_> = sentences.iter().flat_map(|s| &s.tokens).collect();
    let repetitions = text.len() / paragraph.len();
    let of = |k: usize| -> Vec<(&str, &str)> {
        tokens.iter().filter(|t| t.start / paragraph.len() == k).map(|t| (t.lemma.as_str(), t.pos.as_str())).collect()
    };
    let second = of(1);
    assert!(!second.is_empty());
    for k in 2..repetitions - 1 {
        assert_eq!(of(k), second, "repetition {k}");
    }
}

#[test]
fn a_long_run_without_whitespace_is_one_token() {
    let Some(french) = load_or_skip() else {
        return;
    };
    // spaCy strips the elisions and commas one by one (seconds for 12 KB); here it is one token.
    let run_of = format!("{}x,x,x.", "l'".repeat(50_000));
    let sentences = run(&french, &format!("Le chat {run_of} dort."));
    let tokens: Vec<&str> = sentences.iter().flat_map(|s| &s.tokens).map(|t| t.text.as_str()).collect();
    assert_eq!(tokens, ["Le", "chat", run_of.as_str(), "dort", "."]);
    // a word of ordinary length still has its elision split off
    let short = run(&french, "l'école");
    assert_eq!(short[0].tokens.len(), 2);
}
