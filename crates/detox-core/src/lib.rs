//! Core types shared by every stage of detox.
//!
//! Data flows one way through detox: prompts -> generations -> scores -> metrics -> report.
//! This crate holds the seam every scoring backend plugs into: the [`Scorer`] trait, the
//! [`Activation`] that says how a backend turns logits into scores, and the per-text
//! [`TextScore`] it returns. Keeping it tiny means a new backend (a remote API, a fastText
//! model, a GPU classifier) is one new type that implements one trait.
//!
//! ```
//! use detox_core::{Activation, Scorer, ScorerInfo, ScoreError, TextScore};
//!
//! /// A toy scorer: the share of upper-case letters, as a single sigmoid-style attribute.
//! struct Shouting(ScorerInfo);
//!
//! impl Scorer for Shouting {
//!     fn info(&self) -> &ScorerInfo { &self.0 }
//!     fn score(&self, texts: &[&str]) -> Result<Vec<TextScore>, ScoreError> {
//!         Ok(texts.iter().map(|t| {
//!             let letters = t.chars().filter(|c| c.is_alphabetic()).count().max(1);
//!             let upper = t.chars().filter(|c| c.is_uppercase()).count();
//!             TextScore { values: vec![upper as f32 / letters as f32], tokens: t.len(), truncated: false }
//!         }).collect())
//!     }
//! }
//!
//! let s = Shouting(ScorerInfo::new("shouting", vec!["shouting".into()], Activation::Sigmoid));
//! let out = s.score(&["HEY you"]).unwrap();
//! assert!((out[0].values[0] - 0.5).abs() < 1e-6);
//! ```

pub mod compare;
mod ensemble;
pub mod metrics;
pub mod rng;
pub mod testing;

pub use ensemble::{Ensemble, EnsembleSpec, ENSEMBLE_FORMAT, ENSEMBLE_SPEC};

use serde::{Deserialize, Serialize};
use std::fmt;

/// How a backend turns its raw outputs into scores in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// Independent sigmoids, one per attribute (multi-label: Detoxify, Perspective).
    /// Scores do not sum to one; each is the probability that its attribute applies.
    Sigmoid,
    /// One softmax over all labels (single-label classification): scores sum to one.
    Softmax,
}

impl Activation {
    /// Parses `sigmoid` or `softmax` (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "sigmoid" | "multi_label_classification" | "multi-label" => Some(Self::Sigmoid),
            "softmax" | "single_label_classification" | "single-label" => Some(Self::Softmax),
            _ => None,
        }
    }

    /// Applies the activation to one row of logits, in place.
    pub fn apply(self, logits: &mut [f32]) {
        match self {
            Activation::Sigmoid => {
                for v in logits.iter_mut() {
                    *v = sigmoid(*v);
                }
            }
            Activation::Softmax => {
                let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0f32;
                for v in logits.iter_mut() {
                    *v = (*v - max).exp();
                    sum += *v;
                }
                if sum > 0.0 {
                    for v in logits.iter_mut() {
                        *v /= sum;
                    }
                }
            }
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Activation::Sigmoid => "sigmoid",
            Activation::Softmax => "softmax",
        })
    }
}

/// The logistic function, computed without overflow for large negative inputs.
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// What a scorer is: its identity, the attributes it outputs (in order) and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScorerInfo {
    /// A stable identity: a registry name or the path it was loaded from.
    pub id: String,
    /// Attribute names, in the order of [`TextScore::values`].
    pub attributes: Vec<String>,
    /// Sigmoid (multi-label) or softmax (single-label).
    pub activation: Activation,
    /// The longest input, in tokens, that the scorer reads; longer texts are truncated.
    pub max_tokens: Option<usize>,
    /// A short human description: architecture, source, etc.
    pub description: String,
}

impl ScorerInfo {
    /// A new description with no token limit and an empty description.
    pub fn new(id: impl Into<String>, attributes: Vec<String>, activation: Activation) -> Self {
        Self {
            id: id.into(),
            attributes,
            activation,
            max_tokens: None,
            description: String::new(),
        }
    }

    /// The position of an attribute in [`TextScore::values`].
    pub fn attribute_index(&self, name: &str) -> Option<usize> {
        self.attributes.iter().position(|a| a == name)
    }
}

/// The scores of one text.
#[derive(Debug, Clone, PartialEq)]
pub struct TextScore {
    /// One value in [0, 1] per attribute, in the order of [`ScorerInfo::attributes`].
    pub values: Vec<f32>,
    /// How many tokens the model read (after truncation, special tokens included).
    pub tokens: usize,
    /// Whether the text was longer than the model's maximum length and was cut.
    pub truncated: bool,
}

/// Why a scorer failed on a batch.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// Tokenization failed.
    #[error("tokenization failed: {0}")]
    Tokenize(String),
    /// The model's forward pass failed.
    #[error("model forward pass failed: {0}")]
    Model(String),
    /// Any other backend failure (a remote service, I/O, ...).
    #[error("{0}")]
    Other(String),
}

/// A text classifier that gives per-attribute scores in [0, 1].
///
/// Implementations are `Send + Sync` so one loaded model can serve many threads or requests.
/// `score` must return exactly one [`TextScore`] per input text, in input order.
pub trait Scorer: Send + Sync {
    /// Identity, attributes and activation.
    fn info(&self) -> &ScorerInfo;

    /// Scores a batch of texts. Backends may reorder internally (e.g. sort by length) but must
    /// return results in input order.
    fn score(&self, texts: &[&str]) -> Result<Vec<TextScore>, ScoreError>;

    /// Scores each text on its own account: the outer error stops the whole batch (a model
    /// that cannot run, a remote service refusing the key), an inner one is that text's alone
    /// (a remote service that still failed on it after its retries), so a caller writes an
    /// error line for it and goes on. The default is [`Scorer::score`]'s result, text by text.
    fn score_each(&self, texts: &[&str]) -> Result<Vec<Result<TextScore, ScoreError>>, ScoreError> {
        Ok(self.score(texts)?.into_iter().map(Ok).collect())
    }
}

/// [`Scorer::score`] from [`Scorer::score_each`]: every text's scores, or the first failure.
pub fn all_or_first_error(
    each: Result<Vec<Result<TextScore, ScoreError>>, ScoreError>,
) -> Result<Vec<TextScore>, ScoreError> {
    each?.into_iter().collect()
}

impl<S: Scorer + ?Sized> Scorer for Box<S> {
    fn info(&self) -> &ScorerInfo {
        (**self).info()
    }
    fn score(&self, texts: &[&str]) -> Result<Vec<TextScore>, ScoreError> {
        (**self).score(texts)
    }
    fn score_each(&self, texts: &[&str]) -> Result<Vec<Result<TextScore, ScoreError>>, ScoreError> {
        (**self).score_each(texts)
    }
}

impl<S: Scorer + ?Sized> Scorer for std::sync::Arc<S> {
    fn info(&self) -> &ScorerInfo {
        (**self).info()
    }
    fn score(&self, texts: &[&str]) -> Result<Vec<TextScore>, ScoreError> {
        (**self).score(texts)
    }
    fn score_each(&self, texts: &[&str]) -> Result<Vec<Result<TextScore, ScoreError>>, ScoreError> {
        (**self).score_each(texts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(ScorerInfo, Vec<f32>);

    impl Scorer for Fixed {
        fn info(&self) -> &ScorerInfo {
            &self.0
        }
        fn score(&self, texts: &[&str]) -> Result<Vec<TextScore>, ScoreError> {
            Ok(texts
                .iter()
                .map(|t| TextScore {
                    values: self.1.clone(),
                    tokens: t.len(),
                    truncated: false,
                })
                .collect())
        }
    }

    #[test]
    fn ensembles_average_shared_attributes_by_name() {
        let a = Fixed(
            ScorerInfo::new(
                "a",
                vec!["toxicity".into(), "insult".into()],
                Activation::Sigmoid,
            ),
            vec![0.2, 0.4],
        );
        let b = Fixed(
            ScorerInfo::new(
                "b",
                vec!["insult".into(), "threat".into(), "toxicity".into()],
                Activation::Sigmoid,
            ),
            vec![0.8, 0.9, 0.6],
        );
        let e = Ensemble::new(vec![Box::new(a), Box::new(b)])
            .unwrap()
            .with_id("both");
        assert_eq!(e.info().attributes, vec!["toxicity", "insult"]);
        assert_eq!(e.info().id, "both");
        let s = e.score(&["x"]).unwrap();
        assert!((s[0].values[0] - 0.4).abs() < 1e-6 && (s[0].values[1] - 0.6).abs() < 1e-6);
        // Calibrated as a whole: the mean goes through the attribute's map (here x -> x / 2
        // on [0, 1]); attributes without a map keep the mean.
        let map = crate::metrics::Isotonic {
            x: vec![0.0, 1.0],
            y: vec![0.0, 0.5],
        };
        let e = e.with_calibration(&[("toxicity".to_string(), map)].into_iter().collect());
        let s = e.score(&["x"]).unwrap();
        assert!((s[0].values[0] - 0.2).abs() < 1e-6, "{:?}", s[0].values);
        assert!((s[0].values[1] - 0.6).abs() < 1e-6, "{:?}", s[0].values);
        assert!(e.info().description.starts_with("calibrated "));
        let c = Fixed(
            ScorerInfo::new("c", vec!["other".into()], Activation::Sigmoid),
            vec![1.0],
        );
        let d = Fixed(
            ScorerInfo::new("d", vec!["toxicity".into()], Activation::Sigmoid),
            vec![1.0],
        );
        assert!(Ensemble::new(vec![Box::new(c), Box::new(d)]).is_err());
    }

    #[test]
    fn softmax_sums_to_one_and_is_stable() {
        let mut v = vec![1000.0, 1001.0, 999.0];
        Activation::Softmax.apply(&mut v);
        let s: f32 = v.iter().sum();
        assert!((s - 1.0).abs() < 1e-6);
        assert!(v[1] > v[0] && v[0] > v[2]);
    }

    #[test]
    fn sigmoid_matches_definition_and_saturates() {
        let mut v = vec![0.0, 2.0, -2.0, -200.0, 200.0];
        Activation::Sigmoid.apply(&mut v);
        assert!((v[0] - 0.5).abs() < 1e-7);
        assert!((v[1] - 1.0 / (1.0 + (-2.0f32).exp())).abs() < 1e-7);
        assert!((v[1] + v[2] - 1.0).abs() < 1e-6);
        assert_eq!(v[3], 0.0);
        assert_eq!(v[4], 1.0);
    }

    #[test]
    fn activation_parses_hf_problem_types() {
        assert_eq!(
            Activation::parse("multi_label_classification"),
            Some(Activation::Sigmoid)
        );
        assert_eq!(Activation::parse("SoftMax"), Some(Activation::Softmax));
        assert_eq!(Activation::parse("regression"), None);
    }
}
