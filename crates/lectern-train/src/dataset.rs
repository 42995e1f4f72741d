//! Datasets: a CSV file (with a header line) or a JSON array of objects, read from a stream one
//! row at a time into typed columns, with the schema inferred on the way.
//!
//! Only the parsed columns are held: numbers as `f64` (NaN for a missing value), other values as
//! codes into a per-column dictionary. A malformed file is an error naming the line and column
//! of the first problem.

use crate::error::TrainError;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::io::{BufReader, Read};

/// How many rows a dataset keeps verbatim for previews.
pub const PREVIEW_ROWS: usize = 10;
/// A column of strings with at most this many distinct values (and at most half as many as it
/// has values) is a category; with more it is free text.
pub const MAX_CATEGORIES: usize = 50;
/// Marks a missing value among a column's dictionary codes.
pub const MISSING_CODE: u32 = u32::MAX;

/// The inferred type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// Numbers, some with a fractional part.
    Number,
    /// Whole numbers only.
    Integer,
    /// A few distinct strings (labels such as "cat", "dog").
    Category,
    /// Many distinct strings (names, sentences): not usable for training.
    Text,
}

/// What the schema says about one column.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnSchema {
    /// The column's name from the header (or the first object's key).
    pub name: String,
    /// The inferred type.
    #[serde(rename = "type")]
    pub kind: ColumnType,
    /// How many rows have no value in this column.
    pub missing: u64,
    /// How many distinct values the column has (numbers are counted up to 51: `51` means
    /// "more than 50").
    pub distinct: Option<u64>,
}

/// The schema of a dataset: its columns and its row count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Schema {
    /// The columns in file order.
    pub columns: Vec<ColumnSchema>,
    /// The number of data rows (the header not counted).
    pub rows: u64,
}

/// The values of one column.
#[derive(Debug, Clone)]
pub enum ColumnValues {
    /// Numbers; a missing value is NaN.
    Numbers(Vec<f64>),
    /// Strings as codes into `dictionary` ([`MISSING_CODE`] for a missing value).
    Strings { dictionary: Vec<String>, codes: Vec<u32> },
}

/// One column: its schema and its values.
#[derive(Debug, Clone)]
pub struct Column {
    /// Name, type and counts.
    pub schema: ColumnSchema,
    /// The values, one per row.
    pub values: ColumnValues,
}

impl Column {
    /// The value of a row as text (`None` when missing), for previews and labels.
    pub fn text(&self, row: usize) -> Option<String> {
        match &self.values {
            ColumnValues::Numbers(v) => v.get(row).filter(|x| !x.is_nan()).map(|x| format_number(*x)),
            ColumnValues::Strings { dictionary, codes } => {
                codes.get(row).filter(|c| **c != MISSING_CODE).map(|c| dictionary[*c as usize].clone())
            }
        }
    }
}

/// A value as JSON: a number for `number`/`integer` columns, a string otherwise, `null` when
/// missing.
fn json_value(text: Option<&str>, kind: ColumnType) -> serde_json::Value {
    use serde_json::Value;
    match (text, kind) {
        (None, _) => Value::Null,
        (Some(text), ColumnType::Number | ColumnType::Integer) => text
            .parse::<f64>()
            .ok()
            .and_then(|x| {
                if x.fract() == 0.0 && x.abs() < 9.0e15 {
                    Some(Value::from(x as i64))
                } else {
                    serde_json::Number::from_f64(x).map(Value::Number)
                }
            })
            .unwrap_or_else(|| Value::String(text.to_string())),
        (Some(text), _) => Value::String(text.to_string()),
    }
}

/// A dataset read into memory as typed columns.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The columns in file order.
    pub columns: Vec<Column>,
    /// The number of rows.
    pub rows: usize,
    /// The first [`PREVIEW_ROWS`] rows as read (missing values as `None`).
    pub preview: Vec<Vec<Option<String>>>,
}

/// The file formats a dataset can be read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header line.
    Csv,
    /// A JSON array of flat objects.
    Json,
}

/// What a scan of a dataset file finds, holding none of its values: the schema and the first
/// rows (as JSON objects, see [`Dataset::preview_objects`]).
#[derive(Debug, Clone)]
pub struct Scan {
    pub schema: Schema,
    pub preview: Vec<serde_json::Map<String, serde_json::Value>>,
}

impl Dataset {
    /// Reads a dataset in the given format from a stream.
    pub fn read(reader: impl Read, format: Format) -> Result<Dataset, TrainError> {
        Dataset::read_with(reader, format, true)
    }

    /// Reads a dataset file for its schema and first rows only, in memory bounded by its
    /// columns (not its rows); refuses exactly what [`Dataset::read`] refuses.
    pub fn scan(reader: impl Read, format: Format) -> Result<Scan, TrainError> {
        let dataset = Dataset::read_with(reader, format, false)?;
        Ok(Scan { schema: dataset.schema(), preview: dataset.preview_objects() })
    }

    fn read_with(reader: impl Read, format: Format, keep: bool) -> Result<Dataset, TrainError> {
        match format {
            Format::Csv => Dataset::read_csv_with(reader, keep),
            Format::Json => Dataset::read_json_with(reader, keep),
        }
    }

    /// Reads a CSV file with a header line. Fields are trimmed; an empty field, `NA`, `N/A`,
    /// `NaN`, `null`, `None` or `?` is a missing value.
    pub fn read_csv(reader: impl Read) -> Result<Dataset, TrainError> {
        Dataset::read_csv_with(reader, true)
    }

    fn read_csv_with(reader: impl Read, keep: bool) -> Result<Dataset, TrainError> {
        let mut csv =
            csv::ReaderBuilder::new().has_headers(true).flexible(false).trim(csv::Trim::All).from_reader(reader);
        let header = csv.headers().map_err(csv_error)?.clone();
        if header.is_empty() || (header.len() == 1 && header[0].is_empty()) {
            return Err(TrainError::EmptyDataset("the file has no header line".into()));
        }
        let mut builder = DatasetBuilder::new(header.iter().map(str::to_string).collect(), 1, keep)?;
        let mut record = csv::StringRecord::new();
        while csv.read_record(&mut record).map_err(csv_error)? {
            builder.push_row(record.iter().map(Some))?;
        }
        builder.finish()
    }

    /// Reads a JSON array of flat objects. The first object's keys are the columns, in its
    /// order; a later object may leave a key out (a missing value) but may not add one. `null`
    /// is a missing value; nested arrays and objects are refused.
    pub fn read_json(reader: impl Read) -> Result<Dataset, TrainError> {
        Dataset::read_json_with(reader, true)
    }

    fn read_json_with(reader: impl Read, keep: bool) -> Result<Dataset, TrainError> {
        let mut de = serde_json::Deserializer::from_reader(BufReader::new(reader));
        let builder = RowsSeed { keep }.deserialize(&mut de).map_err(json_error)?;
        de.end().map_err(json_error)?;
        match builder {
            Some(builder) => builder.finish(),
            None => Err(TrainError::EmptyDataset("the array has no objects".into())),
        }
    }

    /// The schema (columns, types, missing counts, row count).
    pub fn schema(&self) -> Schema {
        Schema { columns: self.columns.iter().map(|c| c.schema.clone()).collect(), rows: self.rows as u64 }
    }

    /// The preview rows as JSON objects: numbers for `number`/`integer` columns, strings
    /// otherwise, `null` when missing.
    pub fn preview_objects(&self) -> Vec<serde_json::Map<String, serde_json::Value>> {
        self.preview
            .iter()
            .map(|row| {
                self.columns
                    .iter()
                    .zip(row)
                    .map(|(column, value)| {
                        (column.schema.name.clone(), json_value(value.as_deref(), column.schema.kind))
                    })
                    .collect()
            })
            .collect()
    }

    /// Row `row` as a JSON object, its values as in [`Dataset::preview_objects`].
    pub fn row_object(&self, row: usize) -> serde_json::Map<String, serde_json::Value> {
        self.columns
            .iter()
            .map(|column| (column.schema.name.clone(), json_value(column.text(row).as_deref(), column.schema.kind)))
            .collect()
    }

    /// The column with this name.
    pub fn column(&self, name: &str) -> Result<&Column, TrainError> {
        self.columns.iter().find(|c| c.schema.name == name).ok_or_else(|| TrainError::UnknownColumn(name.to_string()))
    }
}

/// Formats a number the way it would be written in a file (no trailing `.0`).
pub fn format_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

fn is_missing(raw: &str) -> bool {
    matches!(raw, "" | "NA" | "N/A" | "n/a" | "NaN" | "nan" | "null" | "NULL" | "None" | "?")
}

fn csv_error(err: csv::Error) -> TrainError {
    let line = err.position().map(|p| p.line()).unwrap_or(0);
    match err.into_kind() {
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => TrainError::Malformed {
            line,
            column: expected_len.min(len) + 1,
            message: format!("this row has {len} fields but the header has {expected_len}"),
        },
        csv::ErrorKind::Utf8 { err, .. } => TrainError::Malformed {
            line,
            column: err.field() as u64 + 1,
            message: "the text is not valid UTF-8 (save the file as UTF-8)".into(),
        },
        csv::ErrorKind::Io(e) => TrainError::Io(e),
        other => TrainError::Malformed { line, column: 1, message: format!("{other:?}") },
    }
}

fn json_error(err: serde_json::Error) -> TrainError {
    if err.is_io() {
        return TrainError::Io(err.into());
    }
    let text = err.to_string();
    let message = match text.rfind(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    };
    TrainError::Malformed { line: err.line() as u64, column: err.column() as u64, message }
}

/// A string column under construction: value → code, the values by code, and each row's code.
type StringColumn = (HashMap<String, u32>, Vec<String>, Vec<u32>);

/// Builds one column as values arrive: numbers while every value is a number, then strings.
/// Without `keep` (a scan for the schema), no value is kept: only counts, and at most
/// [`MAX_CATEGORIES`] + 1 distinct values.
struct ColumnBuilder {
    name: String,
    keep: bool,
    numbers: Vec<f64>,
    /// Distinct numbers seen (as bits), up to `MAX_CATEGORIES + 1`, when not keeping values.
    seen: Vec<u64>,
    all_integer: bool,
    strings: Option<StringColumn>,
    /// More distinct strings than a scan counts.
    overflow: bool,
    missing: u64,
}

/// Distinct values are counted up to this (a scan stops there).
const DISTINCT_CAP: usize = MAX_CATEGORIES + 1;

impl ColumnBuilder {
    fn new(name: String, keep: bool) -> Self {
        ColumnBuilder {
            name,
            keep,
            numbers: Vec::new(),
            seen: Vec::new(),
            all_integer: true,
            strings: None,
            overflow: false,
            missing: 0,
        }
    }

    fn push_missing(&mut self) {
        self.missing += 1;
        if !self.keep {
            return;
        }
        match &mut self.strings {
            Some((_, _, codes)) => codes.push(MISSING_CODE),
            None => self.numbers.push(f64::NAN),
        }
    }

    fn push_number(&mut self, x: f64) {
        if self.strings.is_some() {
            self.push_string(&format_number(x));
            return;
        }
        self.all_integer &= x.fract() == 0.0 && x.abs() < 9.0e15;
        if self.keep {
            self.numbers.push(x);
        } else {
            // -0.0 and 0.0 are one value.
            let bits = (x + 0.0).to_bits();
            if self.seen.len() < DISTINCT_CAP && !self.seen.contains(&bits) {
                self.seen.push(bits);
            }
        }
    }

    fn push_string(&mut self, s: &str) {
        if self.strings.is_none() {
            let mut dict = (HashMap::new(), Vec::new(), Vec::with_capacity(self.numbers.len() + 1));
            for x in std::mem::take(&mut self.numbers) {
                let code = if x.is_nan() { MISSING_CODE } else { intern(&mut dict.0, &mut dict.1, &format_number(x)) };
                dict.2.push(code);
            }
            for bits in std::mem::take(&mut self.seen) {
                intern(&mut dict.0, &mut dict.1, &format_number(f64::from_bits(bits)));
            }
            self.overflow = dict.1.len() >= DISTINCT_CAP;
            self.strings = Some(dict);
        }
        let (index, dictionary, codes) = self.strings.as_mut().expect("string mode");
        if self.keep {
            let code = intern(index, dictionary, s);
            codes.push(code);
        } else if !self.overflow && !index.contains_key(s) {
            intern(index, dictionary, s);
            self.overflow = dictionary.len() >= DISTINCT_CAP;
        }
    }

    fn push_raw(&mut self, raw: &str) {
        if is_missing(raw) {
            self.push_missing();
        } else if self.strings.is_none() {
            match raw.parse::<f64>() {
                Ok(x) if x.is_finite() => self.push_number(x),
                _ => self.push_string(raw),
            }
        } else {
            self.push_string(raw);
        }
    }

    fn finish(self, rows: usize) -> Column {
        let present = rows as u64 - self.missing;
        match self.strings {
            None => {
                let kind = if present > 0 && self.all_integer { ColumnType::Integer } else { ColumnType::Number };
                let kind = if present == 0 { ColumnType::Text } else { kind };
                let distinct =
                    if self.keep { distinct_numbers(&self.numbers, DISTINCT_CAP) } else { self.seen.len() as u64 };
                Column {
                    schema: ColumnSchema { name: self.name, kind, missing: self.missing, distinct: Some(distinct) },
                    values: ColumnValues::Numbers(self.numbers),
                }
            }
            Some((_, dictionary, codes)) => {
                let distinct = dictionary.len();
                let kind = if distinct <= MAX_CATEGORIES && distinct as u64 * 2 <= present {
                    ColumnType::Category
                } else {
                    ColumnType::Text
                };
                Column {
                    schema: ColumnSchema {
                        name: self.name,
                        kind,
                        missing: self.missing,
                        distinct: Some(distinct.min(DISTINCT_CAP) as u64),
                    },
                    values: ColumnValues::Strings { dictionary, codes },
                }
            }
        }
    }
}

/// How many distinct numbers (NaN not counted) `values` holds, counting up to `cap`.
fn distinct_numbers(values: &[f64], cap: usize) -> u64 {
    let mut seen: Vec<u64> = Vec::with_capacity(cap);
    for x in values.iter().filter(|x| !x.is_nan()) {
        // -0.0 and 0.0 are one value.
        let bits = (x + 0.0).to_bits();
        if !seen.contains(&bits) {
            seen.push(bits);
            if seen.len() == cap {
                break;
            }
        }
    }
    seen.len() as u64
}

fn intern(index: &mut HashMap<String, u32>, dictionary: &mut Vec<String>, s: &str) -> u32 {
    if let Some(code) = index.get(s) {
        return *code;
    }
    let code = dictionary.len() as u32;
    dictionary.push(s.to_string());
    index.insert(s.to_string(), code);
    code
}

/// Collects rows into column builders.
struct DatasetBuilder {
    columns: Vec<ColumnBuilder>,
    rows: usize,
    preview: Vec<Vec<Option<String>>>,
}

impl DatasetBuilder {
    /// `line` is where the names came from, for errors.
    fn new(names: Vec<String>, line: u64, keep: bool) -> Result<Self, TrainError> {
        for (i, name) in names.iter().enumerate() {
            if name.is_empty() {
                return Err(TrainError::Malformed {
                    line,
                    column: i as u64 + 1,
                    message: "a column has no name".into(),
                });
            }
            if names[..i].contains(name) {
                return Err(TrainError::Malformed {
                    line,
                    column: i as u64 + 1,
                    message: format!("the column name '{name}' appears twice"),
                });
            }
        }
        Ok(DatasetBuilder {
            columns: names.into_iter().map(|n| ColumnBuilder::new(n, keep)).collect(),
            rows: 0,
            preview: Vec::new(),
        })
    }

    fn push_row<'a>(&mut self, values: impl Iterator<Item = Option<&'a str>>) -> Result<(), TrainError> {
        let keep = self.preview.len() < PREVIEW_ROWS;
        let mut shown = Vec::new();
        for (column, raw) in self.columns.iter_mut().zip(values) {
            match raw {
                Some(raw) => column.push_raw(raw),
                None => column.push_missing(),
            }
            if keep {
                shown.push(raw.filter(|r| !is_missing(r)).map(str::to_string));
            }
        }
        if keep {
            self.preview.push(shown);
        }
        self.rows += 1;
        Ok(())
    }

    fn finish(self) -> Result<Dataset, TrainError> {
        if self.rows == 0 {
            return Err(TrainError::EmptyDataset("there are no data rows".into()));
        }
        let rows = self.rows;
        Ok(Dataset { columns: self.columns.into_iter().map(|c| c.finish(rows)).collect(), rows, preview: self.preview })
    }
}

/// A JSON scalar of one row.
enum JsonScalar {
    Missing,
    Number(f64),
    Text(String),
}

impl<'de> de::Deserialize<'de> for JsonScalar {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl<'de> Visitor<'de> for ScalarVisitor {
            type Value = JsonScalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number, a string, true, false or null")
            }
            fn visit_unit<E: de::Error>(self) -> Result<JsonScalar, E> {
                Ok(JsonScalar::Missing)
            }
            fn visit_none<E: de::Error>(self) -> Result<JsonScalar, E> {
                Ok(JsonScalar::Missing)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<JsonScalar, E> {
                Ok(JsonScalar::Text(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<JsonScalar, E> {
                Ok(JsonScalar::Number(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<JsonScalar, E> {
                Ok(JsonScalar::Number(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<JsonScalar, E> {
                Ok(JsonScalar::Number(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<JsonScalar, E> {
                Ok(JsonScalar::Text(v.trim().to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<JsonScalar, A::Error> {
                Err(de::Error::custom("a value is a list; only numbers, strings, true, false and null can be values"))
            }
            fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<JsonScalar, A::Error> {
                Err(de::Error::custom(
                    "a value is an object; only numbers, strings, true, false and null can be values",
                ))
            }
        }
        d.deserialize_any(ScalarVisitor)
    }
}

/// Deserializes the top-level array, feeding each object to the builder as it is parsed.
struct RowsSeed {
    keep: bool,
}

impl<'de> DeserializeSeed<'de> for RowsSeed {
    type Value = Option<DatasetBuilder>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(RowsVisitor { keep: self.keep })
    }
}

struct RowsVisitor {
    keep: bool,
}

impl<'de> Visitor<'de> for RowsVisitor {
    type Value = Option<DatasetBuilder>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of objects, one per row")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut builder: Option<DatasetBuilder> = None;
        while let Some(()) = seq.next_element_seed(RowSeed { builder: &mut builder, keep: self.keep })? {}
        Ok(builder)
    }
}

struct RowSeed<'b> {
    builder: &'b mut Option<DatasetBuilder>,
    keep: bool,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object (one row)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut pairs: Vec<(String, JsonScalar)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value::<JsonScalar>()?;
            if pairs.iter().any(|(k, _)| *k == key) {
                return Err(de::Error::custom(format!("the key '{key}' appears twice in one object")));
            }
            pairs.push((key, value));
        }
        if self.builder.is_none() {
            if pairs.is_empty() {
                return Err(de::Error::custom("the first object has no keys"));
            }
            let names = pairs.iter().map(|(k, _)| k.clone()).collect();
            *self.builder = Some(DatasetBuilder::new(names, 1, self.keep).map_err(de::Error::custom)?);
        }
        let builder = self.builder.as_mut().expect("set above");
        let mut row: Vec<Option<JsonScalar>> = builder.columns.iter().map(|_| None).collect();
        for (key, value) in pairs {
            match builder.columns.iter().position(|c| c.name == key) {
                Some(i) => row[i] = Some(value),
                None => return Err(de::Error::custom(format!("the key '{key}' is not in the first object"))),
            }
        }
        let keep = builder.preview.len() < PREVIEW_ROWS;
        let mut shown = Vec::new();
        for (column, value) in builder.columns.iter_mut().zip(row) {
            let text = match value.unwrap_or(JsonScalar::Missing) {
                JsonScalar::Missing => {
                    column.push_missing();
                    None
                }
                JsonScalar::Number(x) => {
                    column.push_number(x);
                    Some(format_number(x))
                }
                JsonScalar::Text(s) => {
                    column.push_raw(&s);
                    Some(s).filter(|s| !is_missing(s))
                }
            };
            if keep {
                shown.push(text);
            }
        }
        if keep {
            builder.preview.push(shown);
        }
        builder.rows += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scan_finds_the_schema_and_preview_a_full_read_finds() {
        let mut csv = String::from("n,i,cat,txt,mixed\n");
        let mut json = Vec::new();
        for r in 0..300 {
            let mixed = if r == 250 { "x".to_string() } else { (r % 60).to_string() };
            let cat = ["a", "b", "NA"][r % 3];
            csv.push_str(&format!("{},{},{cat},word{r},{mixed}\n", r as f64 / 7.0, r % 9));
            json.push(serde_json::json!({
                "n": r as f64 / 7.0, "i": r % 9, "cat": if cat == "NA" { None } else { Some(cat) },
                "txt": format!("word{r}"), "mixed": if r == 250 { serde_json::json!("x") } else { serde_json::json!(r % 60) },
            }));
        }
        let json = serde_json::to_string(&json).unwrap();
        for (text, format) in [(csv.as_str(), Format::Csv), (json.as_str(), Format::Json)] {
            let full = Dataset::read(text.as_bytes(), format).unwrap();
            let scan = Dataset::scan(text.as_bytes(), format).unwrap();
            assert_eq!(scan.schema, full.schema());
            assert_eq!(scan.preview, full.preview_objects());
        }
        let schema = Dataset::scan(csv.as_bytes(), Format::Csv).unwrap().schema;
        let kinds: Vec<(ColumnType, Option<u64>, u64)> =
            schema.columns.iter().map(|c| (c.kind, c.distinct, c.missing)).collect();
        assert_eq!(
            kinds,
            vec![
                (ColumnType::Number, Some(51), 0),
                (ColumnType::Integer, Some(9), 0),
                (ColumnType::Category, Some(2), 100),
                (ColumnType::Text, Some(51), 0),
                (ColumnType::Text, Some(51), 0),
            ]
        );
        let bad = "a,b\n1,2\n3\n";
        assert!(matches!(Dataset::scan(bad.as_bytes(), Format::Csv), Err(TrainError::Malformed { line: 3, .. })));
    }
}
