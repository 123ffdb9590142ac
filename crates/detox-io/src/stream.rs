//! Scoring a stream of input rows: one output line per input line, in order.
//!
//! Rows are gathered into chunks (the scorer sorts a chunk by length and runs its batches side
//! by side); a chunk grows while it takes under a second, so big inputs keep every core busy
//! and slow models still report progress often. A good row becomes its record plus
//! `"scores"`; a bad row, or one whose text the scorer failed on alone
//! ([`Scorer::score_each`]), becomes its record (where readable) plus `"line"` and `"error"`.

use crate::{error_line, scored_line, InputError, LineError, Row};
use detox_core::Scorer;
use std::io::Write;
use std::time::Instant;

/// Counts of a scoring run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Lines scored.
    pub scored: usize,
    /// Lines that could not be scored (each got an error line).
    pub errors: usize,
    /// Texts cut to the model's token limit.
    pub truncated: usize,
    /// Tokens scored.
    pub tokens: usize,
}

/// Why a scoring run stopped.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The input became unreadable.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The scorer failed.
    #[error(transparent)]
    Score(#[from] detox_core::ScoreError),
    /// The output could not be written.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    /// The scorer broke its contract.
    #[error("the scorer returned {got} scores for {want} texts")]
    Count {
        /// Scores returned.
        got: usize,
        /// Texts given.
        want: usize,
    },
}

/// How rows are chunked.
#[derive(Debug, Clone, Copy)]
pub struct Chunking {
    /// Rows of the first chunk.
    pub first: usize,
    /// The largest chunk.
    pub max: usize,
}

impl Chunking {
    /// Chunks for `batch_size`-text batches run `threads` at a time.
    pub fn for_batches(batch_size: usize, threads: usize) -> Self {
        let max = (batch_size * 64).max(1024);
        Self {
            first: (batch_size * 8 * threads).clamp(64, max),
            max,
        }
    }
}

/// Scores `rows` with `scorer`, writing one line per row to `out` in input order; `progress`
/// hears the tally after each chunk.
pub fn score_rows(
    rows: impl Iterator<Item = Result<Row, InputError>>,
    scorer: &dyn Scorer,
    out: &mut dyn Write,
    chunking: Chunking,
    progress: &mut dyn FnMut(&Tally),
) -> Result<Tally, StreamError> {
    let mut size = chunking.first.max(1);
    let mut chunk: Vec<Row> = Vec::with_capacity(chunking.max);
    let mut tally = Tally::default();
    for row in rows {
        chunk.push(row?);
        if chunk.len() >= size {
            let t = Instant::now();
            score_chunk(scorer, &mut chunk, out, &mut tally)?;
            progress(&tally);
            // Chunks double while one takes under 4 s: progress stays frequent, and bigger
            // chunks sort more texts by length together and make the cores wait for each
            // other less often (from 1 s to 4 s made batch-32 scoring of the RTP benchmark
            // about 7% faster on 2 cores).
            if t.elapsed().as_secs_f64() < 4.0 {
                size = (size * 2).min(chunking.max.max(1));
            }
        }
    }
    score_chunk(scorer, &mut chunk, out, &mut tally)?;
    progress(&tally);
    Ok(tally)
}

fn score_chunk(
    scorer: &dyn Scorer,
    chunk: &mut Vec<Row>,
    out: &mut dyn Write,
    tally: &mut Tally,
) -> Result<(), StreamError> {
    let texts: Vec<&str> = chunk
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|i| i.text.as_str()))
        .collect();
    let scores = if texts.is_empty() {
        Vec::new()
    } else {
        scorer.score_each(&texts)?
    };
    if scores.len() != texts.len() {
        return Err(StreamError::Count {
            got: scores.len(),
            want: texts.len(),
        });
    }
    let attrs = &scorer.info().attributes;
    let mut it = scores.into_iter();
    for row in chunk.drain(..) {
        let row = match row {
            // Counted above: there is a result for every good row.
            Ok(item) => match it.next() {
                Some(Ok(s)) => Ok((item, s)),
                // A text the scorer failed on alone (a remote service that gave up on it)
                // is that line's error, with the record kept.
                Some(Err(e)) => Err(LineError {
                    message: format!("line {}: {e}", item.line),
                    line: item.line,
                    record: Some(item.record),
                }),
                None => break,
            },
            Err(e) => Err(e),
        };
        let line = match row {
            Ok((item, s)) => {
                tally.scored += 1;
                tally.tokens += s.tokens;
                tally.truncated += usize::from(s.truncated);
                scored_line(&item.record, attrs, &s.values)
            }
            Err(e) => {
                tally.errors += 1;
                tracing::debug!("{}", e.message);
                error_line(&e)
            }
        };
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Format, InputReader};
    use detox_core::{Activation, ScoreError, ScorerInfo, TextScore};

    /// Scores a text by its length, so outputs can be checked by hand.
    struct Length(ScorerInfo);

    impl Scorer for Length {
        fn info(&self) -> &ScorerInfo {
            &self.0
        }
        fn score(&self, texts: &[&str]) -> Result<Vec<TextScore>, ScoreError> {
            Ok(texts
                .iter()
                .map(|t| TextScore {
                    values: vec![t.len() as f32 / 10.0],
                    tokens: 1,
                    truncated: false,
                })
                .collect())
        }
    }

    #[test]
    fn every_line_gets_an_output_line_in_order_across_chunks() {
        let mut input = String::new();
        for i in 0..300 {
            if i % 7 == 3 {
                input.push_str("not json\n");
            } else {
                input.push_str(&format!("{{\"text\": \"{}\"}}\n", "x".repeat(i % 5)));
            }
        }
        let rows = InputReader::new(input.as_bytes(), Format::Jsonl, "text", "t").unwrap();
        let scorer = Length(ScorerInfo::new(
            "len",
            vec!["len".into()],
            Activation::Sigmoid,
        ));
        let mut out = Vec::new();
        let mut calls = 0;
        let tally = score_rows(
            rows,
            &scorer,
            &mut out,
            Chunking { first: 16, max: 64 },
            &mut |_| calls += 1,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 300);
        assert_eq!(tally.errors, (0..300).filter(|i| i % 7 == 3).count());
        assert_eq!(tally.scored + tally.errors, 300);
        assert!(calls >= 3, "progress after each chunk: {calls}");
        for (i, l) in lines.iter().enumerate() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            if i % 7 == 3 {
                assert_eq!(v["line"], i + 1);
            } else {
                let want = (i % 5) as f64 / 10.0;
                assert!(
                    (v["scores"]["len"].as_f64().unwrap() - want).abs() < 1e-6,
                    "{l}"
                );
            }
        }
    }

    /// Fails on texts containing "fail", alone.
    struct Picky(ScorerInfo);

    impl Scorer for Picky {
        fn info(&self) -> &ScorerInfo {
            &self.0
        }
        fn score(&self, texts: &[&str]) -> Result<Vec<TextScore>, ScoreError> {
            detox_core::all_or_first_error(self.score_each(texts))
        }
        fn score_each(
            &self,
            texts: &[&str],
        ) -> Result<Vec<Result<TextScore, ScoreError>>, ScoreError> {
            Ok(texts
                .iter()
                .map(|t| {
                    if t.contains("fail") {
                        Err(ScoreError::Other("the service gave up".into()))
                    } else {
                        Ok(TextScore {
                            values: vec![0.5],
                            tokens: 1,
                            truncated: false,
                        })
                    }
                })
                .collect())
        }
    }

    #[test]
    fn a_text_the_scorer_fails_on_alone_gets_its_own_error_line_with_its_record() {
        let input = "{\"text\": \"ok\", \"id\": 1}\n{\"text\": \"fail me\", \"id\": 2}\n{\"text\": \"ok\", \"id\": 3}\n";
        let rows = InputReader::new(input.as_bytes(), Format::Jsonl, "text", "t").unwrap();
        let scorer = Picky(ScorerInfo::new(
            "p",
            vec!["tox".into()],
            Activation::Sigmoid,
        ));
        let mut out = Vec::new();
        let tally = score_rows(
            rows,
            &scorer,
            &mut out,
            Chunking { first: 8, max: 8 },
            &mut |_| {},
        )
        .unwrap();
        assert_eq!((tally.scored, tally.errors), (2, 1));
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1]["id"], 2);
        assert_eq!(lines[1]["line"], 2);
        assert!(
            lines[1]["error"].as_str().unwrap().contains("gave up"),
            "{}",
            lines[1]
        );
        assert!(lines[1].get("scores").is_none());
        assert_eq!(lines[2]["scores"]["tox"], 0.5);
    }
}
