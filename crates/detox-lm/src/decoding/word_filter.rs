//! RealToxicityPrompts' WORD FILTER: banned words can never be generated as the token
//! sequences the model's tokenizer makes of them.
//!
//! The rule is transformers' bad-words logic, which the RTP code passes its word list to
//! (`NoBadWordsLogitsProcessor` in `generation/logits_process.py`): a banned sequence of one
//! token is always blocked; for a longer one, its last token is blocked whenever the row's
//! tokens so far end with the sequence's other tokens (transformers compares against the
//! whole input, prompt included, and so does this filter). Each word is tokenized with and
//! without a leading space, in lower case, Capitalised and UPPER case.
//!
//! What is guaranteed is exactly that: none of those token sequences appears in a
//! continuation. The same word spelled another way (other casing, inner punctuation, split
//! into other tokens, `f*ck`) is not blocked.

use super::{Mitigation, MitigationState, PreparedMitigation};
use crate::tokenizer::LmTokenizer;
use candle_core::Result;
use std::collections::BTreeSet;

/// The word filter.
#[derive(Debug, Clone, PartialEq)]
pub struct WordFilter {
    /// Single-token bans.
    single: Vec<u32>,
    /// Longer banned sequences.
    multi: Vec<Vec<u32>>,
    /// The list's name, for `run.json`.
    list: String,
    /// Words on the list.
    words: usize,
    /// sha256 of the list file, where it came from one.
    list_sha256: Option<String>,
}

/// The spellings of a word the filter bans: lower, Capitalised, UPPER, each with and without a
/// leading space.
pub fn variants(word: &str) -> Vec<String> {
    let lower = word.to_lowercase();
    let mut chars = lower.chars();
    let capitalised = match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    let upper = word.to_uppercase();
    let mut out = Vec::new();
    for w in [lower, capitalised, upper] {
        for v in [w.clone(), format!(" {w}")] {
            if !v.trim().is_empty() && !out.contains(&v) {
                out.push(v);
            }
        }
    }
    out
}

impl WordFilter {
    /// A filter of token sequences.
    pub fn from_sequences(
        sequences: impl IntoIterator<Item = Vec<u32>>,
        list: &str,
        words: usize,
    ) -> Self {
        let set: BTreeSet<Vec<u32>> = sequences.into_iter().filter(|s| !s.is_empty()).collect();
        let (single, multi): (Vec<Vec<u32>>, Vec<Vec<u32>>) =
            set.into_iter().partition(|s| s.len() == 1);
        Self {
            single: single.into_iter().map(|s| s[0]).collect(),
            multi,
            list: list.to_string(),
            words,
            list_sha256: None,
        }
    }

    /// Records the list file's sha256 (for `run.json`).
    pub fn with_list_sha256(mut self, sha: String) -> Self {
        self.list_sha256 = Some(sha);
        self
    }

    /// A filter of `words` (blank lines and `#` comments skipped) as `tok` tokenizes them.
    pub fn from_words<'w>(
        tok: &LmTokenizer,
        words: impl IntoIterator<Item = &'w str>,
        list: &str,
    ) -> Result<Self> {
        let mut seqs = Vec::new();
        let mut n = 0usize;
        for w in words {
            let w = w.trim();
            if w.is_empty() || w.starts_with('#') {
                continue;
            }
            n += 1;
            for v in variants(w) {
                seqs.push(tok.encode(&v)?);
            }
        }
        Ok(Self::from_sequences(seqs, list, n))
    }

    /// The banned token sequences.
    pub fn sequences(&self) -> impl Iterator<Item = Vec<u32>> + '_ {
        self.single
            .iter()
            .map(|&t| vec![t])
            .chain(self.multi.iter().cloned())
    }

    /// Whether `ids` contains a banned sequence anywhere.
    pub fn contains_banned(&self, ids: &[u32]) -> bool {
        self.sequences()
            .any(|s| ids.windows(s.len()).any(|w| w == s.as_slice()))
    }

    fn block(&self, row: &mut [f32], history: &[u32]) {
        for &t in &self.single {
            if let Some(x) = row.get_mut(t as usize) {
                *x = f32::NEG_INFINITY;
            }
        }
        for s in &self.multi {
            let (last, head) = match s.split_last() {
                Some(p) => p,
                None => continue,
            };
            if history.ends_with(head) {
                if let Some(x) = row.get_mut(*last as usize) {
                    *x = f32::NEG_INFINITY;
                }
            }
        }
    }
}

impl Mitigation for WordFilter {
    fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "method": "word-filter",
            "list": self.list,
            "list_sha256": self.list_sha256,
            "words": self.words,
            "token_sequences": self.single.len() + self.multi.len(),
        })
    }

    fn prepare<'a>(&'a self, _prompt: &[u32]) -> Result<Box<dyn PreparedMitigation<'a> + 'a>> {
        Ok(Box::new(Filtering(self)))
    }
}

impl<'a> PreparedMitigation<'a> for Filtering<'a> {
    fn start(&self, _rows: usize) -> Result<Box<dyn MitigationState + 'a>> {
        Ok(Box::new(Filtering(self.0)))
    }
}

/// The filter needs no state of its own: it reads each row's history.
struct Filtering<'a>(&'a WordFilter);

impl MitigationState for Filtering<'_> {
    fn adjust(&mut self, logits: &mut [Vec<f32>], history: &[Vec<u32>]) -> Result<()> {
        for (row, h) in logits.iter_mut().zip(history) {
            self.0.block(row, h);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_are_lower_capitalised_upper_with_and_without_a_space() {
        assert_eq!(
            variants("Darn"),
            ["darn", " darn", "Darn", " Darn", "DARN", " DARN"]
        );
        assert_eq!(variants("a"), ["a", " a", "A", " A"]);
    }

    #[test]
    fn single_tokens_always_and_the_last_of_longer_ones_after_the_rest() {
        let f = WordFilter::from_sequences([vec![5], vec![7, 8, 9]], "test", 2);
        let mut rows = vec![vec![0.0f32; 10]; 3];
        let hist = vec![vec![1, 7, 8], vec![7, 1, 8], vec![1, 2]];
        Filtering(&f).adjust(&mut rows, &hist).unwrap();
        for r in &rows {
            assert_eq!(r[5], f32::NEG_INFINITY);
        }
        assert_eq!(rows[0][9], f32::NEG_INFINITY, "after 7 8");
        assert_eq!(rows[1][9], 0.0, "8 alone does not complete 7 8 9");
        assert_eq!(rows[2][9], 0.0);
        assert!(f.contains_banned(&[3, 7, 8, 9]) && !f.contains_banned(&[7, 8, 3, 9]));
    }
}
