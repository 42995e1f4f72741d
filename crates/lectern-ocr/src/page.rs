//! What OCR found on a page, built from Tesseract's TSV output.

use serde::Serialize;

/// The words of a page, line by line in reading order, and the page's text: each line's words
/// joined by a space, lines by a newline, paragraphs by a blank line.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Page {
    pub text: String,
    pub lines: Vec<Line>,
    /// Mean of the words' confidences (0-100); 0 when there is no word.
    pub confidence: f32,
}

/// One line of text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    pub block: u32,
    pub paragraph: u32,
    pub line: u32,
    pub text: String,
    pub words: Vec<Word>,
}

/// One word as Tesseract read it (punctuation stays attached: "aujourd'hui,").
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Word {
    pub text: String,
    /// Tesseract's confidence, 0-100.
    pub confidence: f32,
    pub left: u32,
    pub top: u32,
    pub width: u32,
    pub height: u32,
    /// Byte range of the word in the page's `text`.
    pub start: usize,
    pub end: usize,
}

impl Page {
    /// Every word, in reading order.
    pub fn words(&self) -> impl Iterator<Item = &Word> {
        self.lines.iter().flat_map(|l| l.words.iter())
    }

    /// The page from Tesseract's TSV text (`get_tsv_text`): rows of level 5 are words, keyed to
    /// their line by (block, paragraph, line). Rows that do not parse and empty words are left out.
    pub fn from_tsv(tsv: &str) -> Page {
        let mut page = Page::default();
        for row in tsv.lines().filter_map(Row::parse) {
            let key = (row.block, row.paragraph, row.line);
            let same_line = page.lines.last().is_some_and(|l| (l.block, l.paragraph, l.line) == key);
            if !same_line {
                page.start_line(key);
            }
            page.push_word(row);
        }
        let words: Vec<f32> = page.words().map(|w| w.confidence).collect();
        page.confidence = if words.is_empty() { 0.0 } else { words.iter().sum::<f32>() / words.len() as f32 };
        page
    }

    fn start_line(&mut self, (block, paragraph, line): (u32, u32, u32)) {
        if let Some(last) = self.lines.last() {
            let new_paragraph = (last.block, last.paragraph) != (block, paragraph);
            self.text.push_str(if new_paragraph { "\n\n" } else { "\n" });
        }
        self.lines.push(Line { block, paragraph, line, text: String::new(), words: Vec::new() });
    }

    fn push_word(&mut self, row: Row<'_>) {
        let Some(line) = self.lines.last_mut() else { return };
        if !line.words.is_empty() {
            self.text.push(' ');
            line.text.push(' ');
        }
        let start = self.text.len();
        self.text.push_str(row.text);
        line.text.push_str(row.text);
        line.words.push(Word {
            text: row.text.to_string(),
            confidence: row.confidence,
            left: row.left,
            top: row.top,
            width: row.width,
            height: row.height,
            start,
            end: self.text.len(),
        });
    }
}

/// One word row of the TSV: `level page block par line word left top width height conf text`.
struct Row<'a> {
    block: u32,
    paragraph: u32,
    line: u32,
    left: u32,
    top: u32,
    width: u32,
    height: u32,
    confidence: f32,
    text: &'a str,
}

impl<'a> Row<'a> {
    fn parse(row: &'a str) -> Option<Row<'a>> {
        let cells: Vec<&str> = row.split('\t').collect();
        if cells.len() < 12 || cells[0] != "5" {
            return None;
        }
        let text = cells[11].trim();
        if text.is_empty() {
            return None;
        }
        let number = |i: usize| cells[i].trim().parse::<u32>().ok();
        let confidence = cells[10].trim().parse::<f32>().ok().filter(|c| c.is_finite())?.clamp(0.0, 100.0);
        Some(Row {
            block: number(2)?,
            paragraph: number(3)?,
            line: number(4)?,
            left: number(6)?,
            top: number(7)?,
            width: number(8)?,
            height: number(9)?,
            confidence,
            text,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TSV: &str = "1\t1\t0\t0\t0\t0\t0\t0\t800\t200\t-1\t\n\
        5\t1\t1\t1\t1\t1\t23\t24\t107\t26\t95.37\tL'école\n\
        5\t1\t1\t1\t1\t2\t328\t26\t184\t31\t95.74\taujourd'hui,\n\
        4\t1\t1\t1\t2\t0\t189\t84\t400\t30\t-1\t\n\
        5\t1\t1\t1\t2\t1\t189\t92\t15\t18\t67.91\ta\n\
        5\t1\t1\t1\t2\t2\t189\t92\t15\t18\t20\t \n\
        5\t1\t2\t1\t1\t1\t22\t144\t40\t26\t87.28\tOù\n\
        5\t1\t2\tx\t1\t1\t22\t144\t40\t26\t87.28\tbad\n";

    #[test]
    fn words_are_grouped_by_line_with_their_place_in_the_text() {
        let page = Page::from_tsv(TSV);
        assert_eq!(page.text, "L'école aujourd'hui,\na\n\nOù");
        assert_eq!(page.lines.len(), 3);
        assert_eq!(page.lines[0].text, "L'école aujourd'hui,");
        let words: Vec<&Word> = page.words().collect();
        assert_eq!(words.len(), 4);
        for w in &words {
            assert_eq!(&page.text[w.start..w.end], w.text);
        }
        assert_eq!((words[1].left, words[1].top, words[1].width, words[1].height), (328, 26, 184, 31));
        assert!((page.confidence - (95.37 + 95.74 + 67.91 + 87.28) / 4.0).abs() < 1e-3);
    }

    #[test]
    fn no_words_is_an_empty_page() {
        let page = Page::from_tsv("1\t1\t0\t0\t0\t0\t0\t0\t800\t200\t-1\t\n");
        assert_eq!(page, Page::default());
        assert_eq!(Page::from_tsv(""), Page::default());
    }
}
