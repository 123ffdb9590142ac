//! Line-oriented text input for detox, with an error per bad line instead of a crash.
//!
//! detox reads texts from JSONL (a field of each object), CSV/TSV (a named column) or plain
//! lines. Every input record yields either an [`Item`] (the record as read plus the text to
//! score) or a [`LineError`] that names the line and the cause, so a caller can write one
//! output line per input line and lose nothing. Only problems that make the whole input
//! unreadable (I/O errors, a CSV without the requested column) are fatal ([`InputError`]).
//!
//! ```
//! use detox_io::{Format, InputReader};
//! let data = "{\"text\": \"hello\", \"id\": 1}\nnot json\n{\"id\": 2}\n";
//! let reader = InputReader::new(data.as_bytes(), Format::Jsonl, "text", "stdin").unwrap();
//! let rows: Vec<_> = reader.map(|r| r.unwrap()).collect();
//! assert_eq!(rows[0].as_ref().unwrap().text, "hello");
//! assert!(rows[1].as_ref().unwrap_err().message.contains("invalid JSON"));
//! assert!(rows[2].as_ref().unwrap_err().message.contains("missing field `text`"));
//! ```

pub mod files;
pub mod html;
pub mod stream;

use serde_json::{Map, Value};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// The layout of an input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line; the text is in a named field.
    Jsonl,
    /// Comma-separated values with a header row; the text is in a named column.
    Csv,
    /// Tab-separated values with a header row; the text is in a named column.
    Tsv,
    /// Each line is one text (an empty line is an empty text).
    Lines,
}

impl Format {
    /// Guesses the format from a file name, else from the first bytes of the input.
    pub fn detect(path: Option<&Path>, head: &[u8]) -> Format {
        if let Some(ext) = path
            .and_then(|p| p.extension())
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
        {
            match ext.as_str() {
                "jsonl" | "ndjson" | "json" => return Format::Jsonl,
                "csv" => return Format::Csv,
                "tsv" => return Format::Tsv,
                "txt" | "text" => return Format::Lines,
                _ => {}
            }
        }
        let first = head.iter().find(|b| !b.is_ascii_whitespace());
        if first == Some(&b'{') {
            Format::Jsonl
        } else {
            Format::Lines
        }
    }
}

/// One readable record: what was read, and the text to score.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// 1-based line number where the record starts.
    pub line: usize,
    /// The record as read (for plain lines, `{field: line}`), in input field order.
    pub record: Map<String, Value>,
    /// The text to score.
    pub text: String,
}

/// A record that could not be used, with its line and cause.
#[derive(Debug, Clone, PartialEq)]
pub struct LineError {
    /// 1-based line number where the record starts.
    pub line: usize,
    /// The record, where it could be parsed (e.g. a JSON object missing the field).
    pub record: Option<Map<String, Value>>,
    /// What is wrong, naming the line and the field.
    pub message: String,
}

/// A failure that makes the whole input unreadable.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// Reading failed.
    #[error("{source_name}: read error: {error}")]
    Io {
        /// The input's name (a path or `stdin`).
        source_name: String,
        /// The underlying error.
        error: std::io::Error,
    },
    /// The CSV/TSV header has no such column.
    #[error("{source_name}: line 1: no column `{field}` in the header (columns: {columns})")]
    MissingColumn {
        /// The input's name.
        source_name: String,
        /// The requested column.
        field: String,
        /// The columns the header has, comma-separated.
        columns: String,
    },
    /// The CSV/TSV input is malformed beyond one record.
    #[error("{source_name}: {message}")]
    Csv {
        /// The input's name.
        source_name: String,
        /// What the CSV reader said.
        message: String,
    },
}

/// The outcome of one input record.
pub type Row = Result<Item, LineError>;

enum Inner<R: Read> {
    Lines {
        reader: BufReader<R>,
        line: usize,
        buf: Vec<u8>,
        json: bool,
    },
    Csv {
        reader: csv::Reader<R>,
        headers: Vec<String>,
        column: usize,
        record: csv::ByteRecord,
    },
}

/// Streams [`Row`]s from any reader. Yields `Err(InputError)` only for fatal failures.
pub struct InputReader<R: Read> {
    inner: Inner<R>,
    field: String,
    source_name: String,
    done: bool,
}

impl<R: Read> InputReader<R> {
    /// A reader over `input` in `format`, reading texts from `field`.
    /// `source_name` (a path or `stdin`) is used in messages.
    pub fn new(
        input: R,
        format: Format,
        field: &str,
        source_name: &str,
    ) -> Result<Self, InputError> {
        let inner = match format {
            Format::Jsonl | Format::Lines => Inner::Lines {
                reader: BufReader::with_capacity(1 << 16, input),
                line: 0,
                buf: Vec::new(),
                json: format == Format::Jsonl,
            },
            Format::Csv | Format::Tsv => {
                let mut reader = csv::ReaderBuilder::new()
                    .delimiter(if format == Format::Tsv { b'\t' } else { b',' })
                    .flexible(true)
                    .has_headers(true)
                    .from_reader(input);
                let headers = reader
                    .byte_headers()
                    .map_err(|e| InputError::Csv {
                        source_name: source_name.to_string(),
                        message: format!("line 1: cannot read the header: {e}"),
                    })?
                    .iter()
                    .map(|h| {
                        String::from_utf8_lossy(h)
                            .trim_start_matches('\u{feff}')
                            .to_string()
                    })
                    .collect::<Vec<_>>();
                let column = headers.iter().position(|h| h == field).ok_or_else(|| {
                    InputError::MissingColumn {
                        source_name: source_name.to_string(),
                        field: field.to_string(),
                        columns: headers.join(", "),
                    }
                })?;
                Inner::Csv {
                    reader,
                    headers,
                    column,
                    record: csv::ByteRecord::new(),
                }
            }
        };
        Ok(Self {
            inner,
            field: field.to_string(),
            source_name: source_name.to_string(),
            done: false,
        })
    }
}

fn parse_json_line(line: usize, text: &str, field: &str) -> Row {
    let value: Value = serde_json::from_str(text).map_err(|e| LineError {
        line,
        record: None,
        message: format!("line {line}: invalid JSON: {e}"),
    })?;
    let Value::Object(map) = value else {
        return Err(LineError {
            line,
            record: None,
            message: format!(
                "line {line}: expected a JSON object, found {}",
                kind(&value)
            ),
        });
    };
    match lookup(&map, field) {
        Some(Value::String(s)) => {
            let text = s.clone();
            Ok(Item {
                line,
                record: map,
                text,
            })
        }
        Some(other) => {
            let message = format!(
                "line {line}: field `{field}` is {}, not a string",
                kind(other)
            );
            Err(LineError {
                line,
                record: Some(map),
                message,
            })
        }
        None => Err(LineError {
            line,
            record: Some(map),
            message: format!("line {line}: missing field `{field}`"),
        }),
    }
}

/// Looks a field up by name, or by a dotted path (`prompt.text`) into nested objects.
pub fn lookup<'a>(map: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    if let Some(v) = map.get(field) {
        return Some(v);
    }
    let mut parts = field.split('.');
    let mut cur = map.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<R: Read> Iterator for InputReader<R> {
    type Item = Result<Row, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match &mut self.inner {
            Inner::Lines {
                reader,
                line,
                buf,
                json,
            } => loop {
                buf.clear();
                match reader.read_until(b'\n', buf) {
                    Ok(0) => {
                        self.done = true;
                        return None;
                    }
                    Ok(_) => {}
                    Err(error) => {
                        self.done = true;
                        return Some(Err(InputError::Io {
                            source_name: self.source_name.clone(),
                            error,
                        }));
                    }
                }
                *line += 1;
                let n = *line;
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                    if buf.last() == Some(&b'\r') {
                        buf.pop();
                    }
                }
                let text = match std::str::from_utf8(buf) {
                    Ok(t) => t,
                    Err(e) => {
                        return Some(Ok(Err(LineError {
                            line: n,
                            record: None,
                            message: format!("line {n}: invalid UTF-8 at byte {}", e.valid_up_to()),
                        })))
                    }
                };
                let text = if n == 1 {
                    text.trim_start_matches('\u{feff}')
                } else {
                    text
                };
                if *json {
                    // Blank lines carry nothing to score in JSONL; skip them.
                    if text.trim().is_empty() {
                        continue;
                    }
                    return Some(Ok(parse_json_line(n, text, &self.field)));
                }
                let mut record = Map::new();
                record.insert(self.field.clone(), Value::String(text.to_string()));
                return Some(Ok(Ok(Item {
                    line: n,
                    record,
                    text: text.to_string(),
                })));
            },
            Inner::Csv {
                reader,
                headers,
                column,
                record,
            } => {
                let ok = match reader.read_byte_record(record) {
                    Ok(ok) => ok,
                    Err(e) => {
                        let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
                        // An I/O error ends the input; a malformed record is reported and skipped.
                        if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                            self.done = true;
                            return Some(Err(InputError::Csv {
                                source_name: self.source_name.clone(),
                                message: format!("line {line}: {e}"),
                            }));
                        }
                        return Some(Ok(Err(LineError {
                            line,
                            record: None,
                            message: format!("line {line}: malformed record: {e}"),
                        })));
                    }
                };
                if !ok {
                    self.done = true;
                    return None;
                }
                let line = record.position().map(|p| p.line() as usize).unwrap_or(0);
                let mut map = Map::new();
                let mut bad: Option<String> = None;
                for (i, h) in headers.iter().enumerate() {
                    let Some(raw) = record.get(i) else {
                        continue;
                    };
                    match std::str::from_utf8(raw) {
                        Ok(s) => {
                            map.insert(h.clone(), Value::String(s.to_string()));
                        }
                        Err(e) => {
                            if bad.is_none() {
                                bad = Some(format!(
                                    "line {line}: column `{h}`: invalid UTF-8 at byte {}",
                                    e.valid_up_to()
                                ));
                            }
                        }
                    }
                }
                if let Some(message) = bad {
                    return Some(Ok(Err(LineError {
                        line,
                        record: Some(map),
                        message,
                    })));
                }
                match map.get(&headers[*column]) {
                    Some(Value::String(s)) => {
                        let text = s.clone();
                        Some(Ok(Ok(Item {
                            line,
                            record: map,
                            text,
                        })))
                    }
                    _ => {
                        let message = format!(
                            "line {line}: missing column `{}` (record has {} of {} fields)",
                            self.field,
                            record.len(),
                            headers.len()
                        );
                        Some(Ok(Err(LineError {
                            line,
                            record: Some(map),
                            message,
                        })))
                    }
                }
            }
        }
    }
}

/// Serialises an output line: the input record with `"scores": {attribute: value}` appended.
pub fn scored_line(record: &Map<String, Value>, attributes: &[String], values: &[f32]) -> String {
    let mut out = record.clone();
    let mut scores = Map::new();
    for (a, v) in attributes.iter().zip(values) {
        scores.insert(a.clone(), f32_value(*v));
    }
    out.insert("scores".to_string(), Value::Object(scores));
    Value::Object(out).to_string()
}

/// Serialises an error line: the record where it could be read, plus `"line"` and `"error"`.
pub fn error_line(err: &LineError) -> String {
    let mut out = err.record.clone().unwrap_or_default();
    out.insert("line".to_string(), Value::from(err.line));
    out.insert("error".to_string(), Value::String(err.message.clone()));
    Value::Object(out).to_string()
}

/// A JSON number for an f32 score, printed with f32 precision (shortest round-trip form).
pub fn f32_value(v: f32) -> Value {
    // Going through the f32's shortest decimal keeps `0.1` from printing as 0.10000000149.
    let s = format!("{v}");
    s.parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(data: &[u8], format: Format, field: &str) -> Vec<Row> {
        InputReader::new(data, format, field, "test")
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }

    #[test]
    fn jsonl_errors_name_line_and_cause() {
        let data = b"{\"text\":\"a\"}\n\n{\"text\": 3}\n[1]\n{\"t\":\"x\"}\n{\"text\":\"\xff\"}\n{\"prompt\":{\"text\":\"nested\"}}\n";
        let rows = read(data, Format::Jsonl, "text");
        assert_eq!(
            rows.len(),
            6,
            "blank line skipped, every other line reported"
        );
        assert_eq!(rows[0].as_ref().unwrap().text, "a");
        let e = rows[1].as_ref().unwrap_err();
        assert_eq!(e.line, 3);
        assert_eq!(e.message, "line 3: field `text` is a number, not a string");
        assert!(rows[2]
            .as_ref()
            .unwrap_err()
            .message
            .contains("expected a JSON object, found an array"));
        assert_eq!(
            rows[3].as_ref().unwrap_err().message,
            "line 5: missing field `text`"
        );
        assert_eq!(
            rows[4].as_ref().unwrap_err().message,
            "line 6: invalid UTF-8 at byte 9"
        );
        assert!(rows[5].is_err(), "`text` is not `prompt.text`");
        let rows = read(
            b"{\"prompt\":{\"text\":\"nested\"}}\n",
            Format::Jsonl,
            "prompt.text",
        );
        assert_eq!(rows[0].as_ref().unwrap().text, "nested");
    }

    #[test]
    fn lines_keep_empty_lines_and_strip_crlf() {
        let rows = read(b"one\r\n\nthree", Format::Lines, "text");
        let texts: Vec<_> = rows
            .iter()
            .map(|r| r.as_ref().unwrap().text.clone())
            .collect();
        assert_eq!(texts, vec!["one", "", "three"]);
        assert_eq!(rows[2].as_ref().unwrap().line, 3);
    }

    #[test]
    fn csv_reads_named_column_with_quoted_newlines() {
        let data = b"id,comment\n1,\"hello, world\"\n2,\"multi\nline\"\n3\n4,ok\n";
        let rows = read(data, Format::Csv, "comment");
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].as_ref().unwrap().text, "hello, world");
        assert_eq!(rows[1].as_ref().unwrap().text, "multi\nline");
        let e = rows[2].as_ref().unwrap_err();
        assert_eq!(e.line, 5);
        assert!(
            e.message.contains("missing column `comment`"),
            "{}",
            e.message
        );
        assert_eq!(rows[3].as_ref().unwrap().line, 6);
        let err = InputReader::new(&data[..], Format::Csv, "text", "in.csv")
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "in.csv: line 1: no column `text` in the header (columns: id, comment)"
        );
    }

    #[test]
    fn tsv_and_detection() {
        let rows = read(b"text\tlabel\nhi there\t1\n", Format::Tsv, "text");
        assert_eq!(rows[0].as_ref().unwrap().text, "hi there");
        assert_eq!(
            Format::detect(Some(Path::new("a.JSONL")), b""),
            Format::Jsonl
        );
        assert_eq!(Format::detect(None, b"  {\"a\":1}"), Format::Jsonl);
        assert_eq!(Format::detect(None, b"hello"), Format::Lines);
        assert_eq!(Format::detect(Some(Path::new("x.tsv")), b"{"), Format::Tsv);
    }

    #[test]
    fn output_lines_keep_record_order_and_append_scores() {
        let rows = read(b"{\"z\":1,\"text\":\"a\",\"a\":2}\n", Format::Jsonl, "text");
        let item = rows[0].as_ref().unwrap();
        let line = scored_line(&item.record, &["toxicity".into()], &[0.1]);
        assert_eq!(
            line,
            r#"{"z":1,"text":"a","a":2,"scores":{"toxicity":0.1}}"#
        );
        let err = LineError {
            line: 4,
            record: None,
            message: "line 4: bad".into(),
        };
        assert_eq!(error_line(&err), r#"{"line":4,"error":"line 4: bad"}"#);
    }
}
