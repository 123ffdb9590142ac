//! Dialect proportions for a stream of input rows: one JSONL line per input line, in order.
//!
//! A good row becomes its record plus `"dialect": {"aa": .., "hispanic": .., "asian": ..,
//! "white": ..}`, or `"dialect": null` where the model declines; a bad row becomes its
//! record (where readable) plus `"line"` and `"error"`, as `detox score` writes them
//! ([`detox_io::error_line`]).

use crate::model::{DialectModel, TOPICS};
use detox_io::{error_line, InputError, Row};
use serde_json::{Map, Value};
use std::io::Write;

/// Counts of a run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Rows with proportions.
    pub inferred: usize,
    /// Rows the model declined (too few known words): `"dialect": null`.
    pub declined: usize,
    /// Rows that could not be read (each got an error line).
    pub errors: usize,
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The input became unreadable.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The output could not be written.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// The `"dialect"` value for proportions: an object keyed by [`TOPICS`], or null.
pub fn dialect_value(p: Option<[f64; 4]>) -> Value {
    match p {
        None => Value::Null,
        Some(p) => {
            let mut m = Map::new();
            for (name, x) in TOPICS.iter().zip(p) {
                m.insert(
                    (*name).to_string(),
                    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number),
                );
            }
            Value::Object(m)
        }
    }
}

/// An output line: the record with `"dialect"` appended (replacing one already there).
pub fn dialect_line(record: &Map<String, Value>, p: Option<[f64; 4]>) -> String {
    let mut out = record.clone();
    out.insert("dialect".to_string(), dialect_value(p));
    Value::Object(out).to_string()
}

/// Infers every row's proportions with `model`, writing one line per row to `out` in input
/// order; `progress` hears the tally every 1,000 rows and at the end.
pub fn dialect_rows(
    rows: impl Iterator<Item = Result<Row, InputError>>,
    model: &DialectModel,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(&Tally),
) -> Result<Tally, StreamError> {
    let mut tally = Tally::default();
    for (i, row) in rows.enumerate() {
        let line = match row? {
            Ok(item) => {
                let p = model.infer(&item.text);
                if p.is_some() {
                    tally.inferred += 1;
                } else {
                    tally.declined += 1;
                }
                dialect_line(&item.record, p)
            }
            Err(e) => {
                tally.errors += 1;
                error_line(&e)
            }
        };
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        if (i + 1) % 1000 == 0 {
            progress(&tally);
        }
    }
    progress(&tally);
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{COUNT_TABLE_FILE, VOCAB_FILE};
    use detox_io::{Format, InputReader};

    #[test]
    fn one_line_per_input_line_in_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(VOCAB_FILE), "1\tfoo\n1\tbar\n").unwrap();
        std::fs::write(dir.path().join(COUNT_TABLE_FILE), "1 1 1 1\n3 1 1 1\n").unwrap();
        let model = DialectModel::load(dir.path()).unwrap();
        let input = "{\"id\": 1, \"t\": {\"x\": \"foo\"}}\nnot json\n{\"id\": 3, \"t\": {\"x\": \"zzz\"}}\n{\"id\": 4, \"t\": {\"x\": \"BAR\"}}\n";
        let rows = InputReader::new(input.as_bytes(), Format::Jsonl, "t.x", "in.jsonl").unwrap();
        let mut out = Vec::new();
        let mut calls = 0;
        let tally = dialect_rows(rows, &model, &mut out, &mut |_| calls += 1).unwrap();
        assert_eq!(
            tally,
            Tally {
                inferred: 2,
                declined: 1,
                errors: 1
            }
        );
        assert_eq!(calls, 1);
        let lines: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["id"], 1);
        // foo has equal counts everywhere: (1+1)/N_k with N_k = [4, 2, 2, 2] -> [.5, 1, 1, 1]/3.5.
        let aa = lines[0]["dialect"]["aa"].as_f64().unwrap();
        assert!((aa - 0.5 / 3.5).abs() < 1e-12, "{aa}");
        let keys: Vec<&String> = lines[0]["dialect"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["aa", "hispanic", "asian", "white"]);
        assert_eq!(lines[1]["line"], 2);
        assert!(lines[1]["error"]
            .as_str()
            .unwrap()
            .contains("line 2: invalid JSON"));
        assert_eq!(lines[2]["id"], 3);
        assert_eq!(lines[2]["dialect"], Value::Null);
        assert_eq!(lines[3]["id"], 4);
        assert!(lines[3]["dialect"]["aa"].as_f64().unwrap() > 0.0);
    }
}
