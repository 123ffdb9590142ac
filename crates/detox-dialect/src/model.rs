//! The TwitterAAE model: loading its two files and inferring a text's dialect proportions.
//!
//! Follows `code/predict.py` of slanglab/twitteraae (commit db4d6d1): `load_model` for the
//! files and word probabilities, `predict` for the vocabulary thresholds, `infer_cvb0` for
//! the inference. Own implementation; the line references below are to that file.

use crate::twokenize::{python_lower, tokenize_raw_tweet};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The vocabulary file of the model folder.
pub const VOCAB_FILE: &str = "model_vocab.txt";
/// The count-table file of the model folder.
pub const COUNT_TABLE_FILE: &str = "model_count_table.txt";
/// Where `detox dialect` looks for the model when no folder is given: relative to the
/// current directory, where this project keeps its shared data.
pub const DEFAULT_MODEL_DIR: &str = "../shared/data/twitteraae-model";

/// The four dialect topics, in the order of the count table's columns.
pub const TOPICS: [&str; 4] = ["aa", "hispanic", "asian", "white"];

/// Index of the African-American topic in a proportion array.
pub const AA: usize = 0;
/// Index of the Hispanic topic in a proportion array.
pub const HISPANIC: usize = 1;
/// Index of the Asian topic in a proportion array.
pub const ASIAN: usize = 2;
/// Index of the White topic in a proportion array.
pub const WHITE: usize = 3;

/// Symmetric Dirichlet prior of the inference (`predict(..., alpha=1, ...)`).
pub const ALPHA: f64 = 1.0;
/// Passes of CVB0, the first being the initialisation (`predict(..., numpasses=5, ...)`).
pub const PASSES: usize = 5;
/// Fewest in-vocabulary tokens for a prediction (`thresh1=1`).
pub const MIN_KNOWN_TOKENS: usize = 1;
/// Smallest share of in-vocabulary tokens for a prediction (`thresh2=0.2`).
pub const MIN_KNOWN_SHARE: f64 = 0.2;

/// Why the model could not be found or loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// No model folder was given and the default one does not exist.
    #[error(
        "the TwitterAAE model is not at {tried}: download model/model_vocab.txt and \
         model/model_count_table.txt from https://github.com/slanglab/twitteraae into one \
         folder and pass it with --model DIR"
    )]
    NotFound {
        /// The folder that was tried.
        tried: PathBuf,
    },
    /// A model file could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// A line of a model file is malformed.
    #[error("{}: line {line}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The two files disagree in length or a topic has no mass.
    #[error("{0}")]
    Inconsistent(String),
}

/// Picks the model folder: `given` when set, else [`DEFAULT_MODEL_DIR`] when it exists.
pub fn resolve_model_dir(given: Option<&Path>) -> Result<PathBuf, ModelError> {
    match given {
        Some(p) => Ok(p.to_path_buf()),
        None => {
            let p = PathBuf::from(DEFAULT_MODEL_DIR);
            if p.join(VOCAB_FILE).is_file() {
                Ok(p)
            } else {
                Err(ModelError::NotFound { tried: p })
            }
        }
    }
}

/// The loaded model: a word index and per-word topic probabilities.
#[derive(Debug, Clone)]
pub struct DialectModel {
    /// Word to row (`w2num` in `load_model`), built once.
    index: HashMap<String, u32>,
    /// `(N_wk + 1) / N_k` per row (`wordprobs`).
    word_probs: Vec<[f64; 4]>,
}

/// What [`DialectModel::infer_tokens`] found for one text.
#[derive(Debug, Clone, PartialEq)]
pub struct Inference {
    /// Tokens of the text.
    pub tokens: usize,
    /// Of which in the vocabulary.
    pub known: usize,
    /// The proportions (aa, hispanic, asian, white), or `None` when declined.
    pub proportions: Option<[f64; 4]>,
}

fn read(path: &Path) -> Result<String, ModelError> {
    std::fs::read_to_string(path).map_err(|error| ModelError::Io {
        path: path.to_path_buf(),
        error,
    })
}

impl DialectModel {
    /// Loads `model_vocab.txt` and `model_count_table.txt` from `dir` (`load_model`).
    ///
    /// The word of a vocabulary line is its last tab-separated field with ASCII whitespace
    /// stripped (`L.split("\t")[-1].strip()`); a count-table line holds four numbers
    /// separated by whitespace (`np.loadtxt`). Errors name the file and line.
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let vocab_path = dir.join(VOCAB_FILE);
        let table_path = dir.join(COUNT_TABLE_FILE);
        if !vocab_path.is_file() && !table_path.is_file() {
            return Err(ModelError::NotFound {
                tried: dir.to_path_buf(),
            });
        }
        let vocab = read(&vocab_path)?;
        let table = read(&table_path)?;

        let mut counts: Vec<[f64; 4]> = Vec::with_capacity(200_000);
        for (i, line) in table.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let mut row = [0.0; 4];
            let mut fields = line.split_ascii_whitespace();
            for (k, slot) in row.iter_mut().enumerate() {
                let field = fields.next().ok_or_else(|| ModelError::Parse {
                    path: table_path.clone(),
                    line: i + 1,
                    message: format!("expected 4 numbers, found {k}"),
                })?;
                *slot = field.parse::<f64>().map_err(|_| ModelError::Parse {
                    path: table_path.clone(),
                    line: i + 1,
                    message: format!("column {}: `{field}` is not a number", k + 1),
                })?;
                if !slot.is_finite() || *slot < 0.0 {
                    return Err(ModelError::Parse {
                        path: table_path.clone(),
                        line: i + 1,
                        message: format!("column {}: `{field}` is not a count", k + 1),
                    });
                }
            }
            if fields.next().is_some() {
                return Err(ModelError::Parse {
                    path: table_path.clone(),
                    line: i + 1,
                    message: "expected 4 numbers, found more".into(),
                });
            }
            counts.push(row);
        }

        let mut index = HashMap::with_capacity(counts.len());
        let mut rows = 0usize;
        for (i, line) in vocab.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let word = line
                .rsplit('\t')
                .next()
                .unwrap_or(line)
                .trim_matches(|c: char| c.is_ascii_whitespace() || c == '\u{b}');
            if word.is_empty() {
                return Err(ModelError::Parse {
                    path: vocab_path.clone(),
                    line: i + 1,
                    message: "no word after the last tab".into(),
                });
            }
            // A repeated word maps to its last row, as `{w: i for i, w in enumerate(vocab)}`.
            index.insert(word.to_string(), rows as u32);
            rows += 1;
        }
        if rows != counts.len() {
            return Err(ModelError::Inconsistent(format!(
                "{} has {rows} words but {} has {} rows",
                vocab_path.display(),
                table_path.display(),
                counts.len()
            )));
        }

        // N_k = N_wk.sum(0); wordprobs = (N_wk + 1) / N_k.
        let mut totals = [0.0f64; 4];
        for row in &counts {
            for k in 0..4 {
                totals[k] += row[k];
            }
        }
        if let Some(k) = totals.iter().position(|t| *t <= 0.0) {
            return Err(ModelError::Inconsistent(format!(
                "{}: column {} ({}) sums to 0",
                table_path.display(),
                k + 1,
                TOPICS[k]
            )));
        }
        let word_probs = counts
            .into_iter()
            .map(|row| std::array::from_fn(|k| (row[k] + 1.0) / totals[k]))
            .collect();
        Ok(Self { index, word_probs })
    }

    /// Words in the vocabulary.
    pub fn vocab_len(&self) -> usize {
        self.word_probs.len()
    }

    /// The row of a (lower-cased) word, if it is in the vocabulary.
    pub fn word_index(&self, word: &str) -> Option<usize> {
        self.index.get(word).map(|&i| i as usize)
    }

    /// Dialect proportions (aa, hispanic, asian, white) of raw tweet text, summing to 1, or
    /// `None` where the model declines (too few known tokens). The text is tokenized with
    /// [`tokenize_raw_tweet`], the authors' tokenizer for raw tweets.
    pub fn infer(&self, text: &str) -> Option<[f64; 4]> {
        self.infer_tokens(&tokenize_raw_tweet(text)).proportions
    }

    /// `predict(tokens)`: lower-cases the tokens (Python 2.7's `unicode.lower`, see
    /// [`python_lower`]), keeps those in the vocabulary, declines when fewer than
    /// [`MIN_KNOWN_TOKENS`] or a share under [`MIN_KNOWN_SHARE`] are known, else runs
    /// [`DialectModel::cvb0`].
    pub fn infer_tokens<S: AsRef<str>>(&self, tokens: &[S]) -> Inference {
        let rows: Vec<usize> = tokens
            .iter()
            .filter_map(|t| self.word_index(&python_lower(t.as_ref())))
            .collect();
        let known = rows.len();
        let proportions = if known < MIN_KNOWN_TOKENS
            || (known as f64) / (tokens.len() as f64) < MIN_KNOWN_SHARE
        {
            None
        } else {
            Some(self.cvb0(&rows))
        };
        Inference {
            tokens: tokens.len(),
            known,
            proportions,
        }
    }

    /// Collapsed variational Bayes (CVB0) over the given vocabulary rows (`infer_cvb0`):
    /// each token's topic distribution starts at its normalised word probabilities; on each
    /// of the [`PASSES`]` - 1` later passes, token by token, it is taken out of the document
    /// totals, set proportional to likelihood × (totals + [`ALPHA`]), normalised, and added
    /// back. Returns the normalised totals. `rows` must be non-empty and valid rows.
    pub fn cvb0(&self, rows: &[usize]) -> [f64; 4] {
        // Qs[i,:] = wordprobs[w2num[w],:]; Qs[i,:] /= Qs[i,:].sum(); lik = Qs.copy()
        let lik: Vec<[f64; 4]> = rows
            .iter()
            .map(|&r| {
                let p = self.word_probs[r];
                let s: f64 = p.iter().sum();
                p.map(|x| x / s)
            })
            .collect();
        let mut q = lik.clone();
        // Q_k = Qs.sum(0)
        let mut total = [0.0f64; 4];
        for qi in &q {
            for k in 0..4 {
                total[k] += qi[k];
            }
        }
        for _ in 1..PASSES {
            for (qi, li) in q.iter_mut().zip(&lik) {
                for k in 0..4 {
                    total[k] -= qi[k];
                }
                let mut s = 0.0;
                for k in 0..4 {
                    qi[k] = li[k] * (total[k] + ALPHA);
                    s += qi[k];
                }
                for k in 0..4 {
                    qi[k] /= s;
                    total[k] += qi[k];
                }
            }
        }
        let s: f64 = total.iter().sum();
        total.map(|t| t / s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A three-word model written to a temporary folder.
    fn tiny() -> (tempfile::TempDir, DialectModel) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(VOCAB_FILE), "10\tfoo\n5\tbar \n1\tOOV\n").unwrap();
        std::fs::write(
            dir.path().join(COUNT_TABLE_FILE),
            "9\t0\t0\t1\n1\t1\t1\t1\n0\t0\t0\t0\n",
        )
        .unwrap();
        let m = DialectModel::load(dir.path()).unwrap();
        (dir, m)
    }

    #[test]
    fn word_probabilities_and_one_token() {
        let (_d, m) = tiny();
        assert_eq!(m.vocab_len(), 3);
        assert_eq!(m.word_index("bar"), Some(1));
        // N_k = [10, 1, 1, 2]; foo: (10/10, 1/1, 1/1, 2/2) = all 1 -> uniform.
        let p = m.cvb0(&[0]);
        for x in p {
            assert!((x - 0.25).abs() < 1e-15, "{p:?}");
        }
        // bar: (2/10, 2/1, 2/1, 2/2) = (0.2, 2, 2, 1), normalised by 5.2; a single token's
        // later passes set it to lik * (0 + alpha), so it stays at lik.
        let p = m.cvb0(&[1]);
        let want = [0.2 / 5.2, 2.0 / 5.2, 2.0 / 5.2, 1.0 / 5.2];
        for k in 0..4 {
            assert!((p[k] - want[k]).abs() < 1e-15, "{p:?}");
        }
    }

    #[test]
    fn two_tokens_by_hand() {
        let (_d, m) = tiny();
        // lik(foo) = u = [.25; 4], lik(bar) = b = [1, 10, 10, 5] / 26.
        // Hand-run of infer_cvb0 for tokens [foo, bar]:
        // pass 1, foo: totals without it = b; q0 ∝ u * (b + 1).
        // pass 1, bar: totals without it = q0; q1 ∝ b * (q0 + 1); and so on for 4 passes.
        let b = [1.0 / 26.0, 10.0 / 26.0, 10.0 / 26.0, 5.0 / 26.0];
        let u = [0.25; 4];
        let norm = |v: [f64; 4]| {
            let s: f64 = v.iter().sum();
            v.map(|x| x / s)
        };
        let (mut q0, mut q1) = (u, b);
        for _ in 0..4 {
            q0 = norm(std::array::from_fn(|k| u[k] * (q1[k] + 1.0)));
            q1 = norm(std::array::from_fn(|k| b[k] * (q0[k] + 1.0)));
        }
        let want = norm(std::array::from_fn(|k| q0[k] + q1[k]));
        let got = m.cvb0(&[0, 1]);
        for k in 0..4 {
            assert!((got[k] - want[k]).abs() < 1e-12, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn thresholds() {
        let (_d, m) = tiny();
        // Known tokens are matched lower-cased; OOV (upper case in the file) never matches.
        let r = m.infer_tokens(&["FOO", "x", "y", "z"]);
        assert_eq!((r.tokens, r.known), (4, 1));
        assert!(r.proportions.is_some(), "1 of 4 = 25% is enough");
        let r = m.infer_tokens(&["foo", "a", "b", "c", "d"]);
        assert!(r.proportions.is_some(), "1 of 5 = 20% exactly is enough");
        let r = m.infer_tokens(&["foo", "a", "b", "c", "d", "e"]);
        assert_eq!(r.proportions, None, "1 of 6 < 20%");
        let r = m.infer_tokens(&["OOV", "oov"]);
        assert_eq!((r.known, r.proportions), (0, None));
        assert_eq!(m.infer_tokens::<&str>(&[]).proportions, None);
        assert_eq!(m.infer(""), None);
        assert!(m.infer("Foo!").is_some(), "1 of 2 tokens known");
    }

    #[test]
    fn load_errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let e = DialectModel::load(d).unwrap_err();
        assert!(matches!(e, ModelError::NotFound { .. }), "{e}");
        std::fs::write(d.join(VOCAB_FILE), "1\ta\n1\tb\n").unwrap();
        std::fs::write(d.join(COUNT_TABLE_FILE), "1 2 3 4\n1 2 x 4\n").unwrap();
        let e = DialectModel::load(d).unwrap_err().to_string();
        assert!(
            e.contains("model_count_table.txt: line 2: column 3: `x`"),
            "{e}"
        );
        std::fs::write(d.join(COUNT_TABLE_FILE), "1 2 3 4\n1 2 3\n").unwrap();
        let e = DialectModel::load(d).unwrap_err().to_string();
        assert!(e.contains("line 2: expected 4 numbers, found 3"), "{e}");
        std::fs::write(d.join(COUNT_TABLE_FILE), "1 2 3 4\n").unwrap();
        let e = DialectModel::load(d).unwrap_err().to_string();
        assert!(e.contains("has 2 words but"), "{e}");
        std::fs::write(d.join(VOCAB_FILE), "1\ta\n1\t \n").unwrap();
        std::fs::write(d.join(COUNT_TABLE_FILE), "1 2 3 4\n1 2 3 4\n").unwrap();
        let e = DialectModel::load(d).unwrap_err().to_string();
        assert!(e.contains("model_vocab.txt: line 2: no word"), "{e}");
    }
}
