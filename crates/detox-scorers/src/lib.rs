//! Scorer backends for detox.
//!
//! Encoder classifiers run in [candle](https://github.com/huggingface/candle): BERT, RoBERTa,
//! XLM-RoBERTa and DistilBERT sequence classifiers from a Hugging Face folder (`config.json`,
//! `model.safetensors` or `pytorch_model.bin`, `tokenizer.json`), and Detoxify's Lightning
//! checkpoints. Each architecture is one file under [`models`], checked against PyTorch
//! `transformers` on tiny random models (see `tests/parity.rs`).
//!
//! ```no_run
//! use detox_core::Scorer;
//! use detox_scorers::{load_scorer, ClassifierOptions};
//! let scorer = load_scorer("path/to/classifier".as_ref(), None, ClassifierOptions::default()).unwrap();
//! let scores = scorer.score(&["you are lovely", "you are an idiot"]).unwrap();
//! println!("{:?} -> {:?}", scorer.info().attributes, scores[1].values);
//! ```

pub mod classifier;
pub mod detoxify;
pub mod embed;
pub mod folder;
pub mod head;
pub mod models;
pub mod ngram;
pub mod tokenize;

pub use classifier::{ClassifierOptions, EncoderScorer};
pub use detoxify::{load_detoxify, read_checkpoint_meta};
pub use embed::{Pooling, SentenceEncoder};
pub use head::{HeadScorer, HeadSpec};
pub use ngram::{NgramScorer, NgramSpec};

use detox_core::Scorer;
use std::path::Path;

/// Why a scorer could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        error: std::io::Error,
    },
    /// A required file is absent.
    #[error("{path}: no {what}")]
    Missing {
        /// The folder.
        path: String,
        /// What is missing.
        what: String,
    },
    /// The tokenizer could not be built.
    #[error("{path}: tokenizer: {message}")]
    Tokenizer {
        /// The file or folder.
        path: String,
        /// Why.
        message: String,
    },
    /// A checkpoint is malformed.
    #[error("{path}: {message}")]
    Checkpoint {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// A Detoxify checkpoint's base model config/tokenizer was not found.
    #[error("{ckpt}: this Detoxify checkpoint is built on `{model_type}`, whose config.json and tokenizer were not found in {dir}; put them beside the checkpoint, pass --base DIR, or run `detox models pull {model_type}`")]
    BaseModel {
        /// The checkpoint.
        ckpt: String,
        /// Its base model name.
        model_type: String,
        /// Where detox looked.
        dir: String,
    },
    /// The checkpoint has an encoder but no classification head.
    #[error("{path}: this checkpoint is an encoder without a classification head; train a head on it with `detox train`, or pass a *ForSequenceClassification checkpoint")]
    NoHead {
        /// The folder or file.
        path: String,
    },
    /// The config is inconsistent.
    #[error("{0}")]
    Config(String),
    /// The model family or layout is not supported.
    #[error("{0}")]
    Unsupported(String),
    /// The model could not be built from its weights.
    #[error("{0}")]
    Model(#[from] candle_core::Error),
}

/// The identity terms a scorer folder's training data named, as `detox train` records them in
/// its spec's `training.identity_terms` (`detox-head.json` or `detox-ngram.json`; for an
/// ensemble folder, the union over its members); `None` when `dir` holds no spec or the specs
/// record no list (an older or foreign folder).
pub fn trained_identity_terms(dir: &std::path::Path) -> Option<Vec<String>> {
    if let Ok(text) = std::fs::read_to_string(dir.join(detox_core::ENSEMBLE_SPEC)) {
        let spec: detox_core::EnsembleSpec = serde_json::from_str(&text).ok()?;
        let lists: Vec<Vec<String>> = spec
            .members
            .iter()
            .filter_map(|m| trained_identity_terms(&dir.join(m)))
            .collect();
        if lists.is_empty() {
            return None;
        }
        let mut all: Vec<String> = lists.into_iter().flatten().collect();
        all.sort();
        all.dedup();
        return Some(all);
    }
    [head::HEAD_SPEC, ngram::NGRAM_SPEC].iter().find_map(|f| {
        let text = std::fs::read_to_string(dir.join(f)).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        serde_json::from_value(v["training"]["identity_terms"].clone()).ok()
    })
}

/// Loads a scorer from a local path: a Hugging Face classifier folder, a Detoxify `.ckpt`
/// (or a folder holding exactly one). `base_dir` overrides where a Detoxify checkpoint's base
/// config and tokenizer are read from.
pub fn load_scorer(
    path: &Path,
    base_dir: Option<&Path>,
    opts: ClassifierOptions,
) -> Result<Box<dyn Scorer>, LoadError> {
    if path.is_file() {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if matches!(ext, "ckpt" | "pt" | "pth") {
            return Ok(Box::new(load_detoxify(path, base_dir, opts)?));
        }
        return Err(LoadError::Unsupported(format!(
            "{}: not a scorer (expected a model folder or a Detoxify .ckpt)",
            path.display()
        )));
    }
    if !path.is_dir() {
        return Err(LoadError::Missing {
            path: path.display().to_string(),
            what: "such file or folder".into(),
        });
    }
    if path.join("config.json").exists()
        && (path.join("model.safetensors").exists() || path.join("pytorch_model.bin").exists())
    {
        return Ok(Box::new(EncoderScorer::from_hf_dir(path, opts)?));
    }
    let ckpts: Vec<_> = std::fs::read_dir(path)
        .map_err(|e| LoadError::Io {
            path: path.display().to_string(),
            error: e,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().map(|e| e == "ckpt").unwrap_or(false))
        .collect();
    if ckpts.len() == 1 {
        return Ok(Box::new(load_detoxify(&ckpts[0], base_dir, opts)?));
    }
    Err(LoadError::Missing {
        path: path.display().to_string(),
        what: "config.json with model weights, nor a single Detoxify .ckpt".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_s_recorded_identity_terms_are_read_from_its_spec() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(trained_identity_terms(dir.path()), None);
        std::fs::write(
            dir.path().join(ngram::NGRAM_SPEC),
            r#"{"format": "x", "training": {"identity_terms": ["gay", "deaf"]}}"#,
        )
        .unwrap();
        assert_eq!(
            trained_identity_terms(dir.path()),
            Some(vec!["gay".to_string(), "deaf".to_string()])
        );
        std::fs::write(
            dir.path().join(ngram::NGRAM_SPEC),
            r#"{"format": "x", "training": {}}"#,
        )
        .unwrap();
        assert_eq!(trained_identity_terms(dir.path()), None);
    }
}
