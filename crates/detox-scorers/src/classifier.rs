//! [`EncoderScorer`]: a BERT-family sequence classifier behind the [`Scorer`] trait.

use crate::models::config::HfConfig;
use crate::models::{load_encoder, EncoderClassifier, Weights};
use crate::tokenize::{tokenizer_config, Encoded, TextTokenizer};
use crate::LoadError;
use candle_core::Device;
use detox_core::{Activation, ScoreError, Scorer, ScorerInfo, TextScore};
use std::path::Path;

/// How to load and run an encoder classifier.
#[derive(Debug, Clone)]
pub struct ClassifierOptions {
    /// Texts per forward pass (after sorting by length).
    pub batch_size: usize,
    /// Override the activation (`problem_type` decides otherwise).
    pub activation: Option<Activation>,
    /// Cut texts to this many tokens (capped at the model's limit).
    pub max_length: Option<usize>,
    /// Run up to this many batches at once on the rayon pool. Best paired with single-threaded
    /// kernels (`RAYON_NUM_THREADS=1` for candle's matrix products, as `detox` sets it); 1 runs
    /// one batch at a time, leaving parallelism to the kernels.
    pub parallel_batches: usize,
}

impl Default for ClassifierOptions {
    fn default() -> Self {
        Self {
            batch_size: 32,
            activation: None,
            max_length: None,
            parallel_batches: 1,
        }
    }
}

/// An encoder classifier: tokenizer, model, label names and activation.
pub struct EncoderScorer {
    model: EncoderClassifier,
    tokenizer: TextTokenizer,
    info: ScorerInfo,
    opts: ClassifierOptions,
}

impl std::fmt::Debug for EncoderScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncoderScorer")
            .field("info", &self.info)
            .finish()
    }
}

/// The weights file of a Hugging Face folder: `model.safetensors`, else `pytorch_model.bin`.
pub fn weights_file(dir: &Path) -> Result<std::path::PathBuf, LoadError> {
    for name in ["model.safetensors", "pytorch_model.bin"] {
        let p = dir.join(name);
        if p.exists() {
            return Ok(p);
        }
    }
    Err(LoadError::Missing {
        path: dir.display().to_string(),
        what: "model.safetensors or pytorch_model.bin".into(),
    })
}

/// The sha256 of a model folder's weights file ([`weights_file`]): a head's record of the
/// encoder it was trained on, and the trainer's embedding-cache tag.
pub fn weights_sha256(dir: &Path) -> Result<String, LoadError> {
    let p = weights_file(dir)?;
    detox_io::files::sha256_file(&p).map_err(|e| LoadError::Io {
        path: e.path.display().to_string(),
        error: e.error,
    })
}

/// The token limit of a model: its positions, lowered by the tokenizer's `model_max_length`
/// and by the user's request.
pub(crate) fn max_tokens(model: &EncoderClassifier, dir: &Path, requested: Option<usize>) -> usize {
    let mut max = model.max_tokens;
    if let Some(m) = tokenizer_config(dir)
        .get("model_max_length")
        .and_then(|v| v.as_u64())
    {
        if (m as usize) < max && m > 0 {
            max = m as usize;
        }
    }
    if let Some(r) = requested {
        max = max.min(r.max(2));
    }
    max
}

impl EncoderScorer {
    /// Loads a Hugging Face sequence-classification folder (`config.json`, weights, tokenizer).
    pub fn from_hf_dir(dir: &Path, opts: ClassifierOptions) -> Result<Self, LoadError> {
        let config_path = dir.join("config.json");
        if !config_path.exists() {
            return Err(LoadError::Missing {
                path: dir.display().to_string(),
                what: "config.json".into(),
            });
        }
        let config = HfConfig::from_file(&config_path)?;
        let wpath = weights_file(dir)?;
        let weights = Weights::load(&wpath, None, &Device::Cpu)?;
        let model = load_encoder(&config, &weights, &Device::Cpu)?;
        if model.head.is_none() {
            return Err(LoadError::NoHead {
                path: dir.display().to_string(),
            });
        }
        let labels = config.labels(model.num_labels).unwrap_or_else(|| {
            (0..model.num_labels)
                .map(|i| format!("LABEL_{i}"))
                .collect()
        });
        let activation = opts.activation.unwrap_or(match config.problem_type() {
            Some("multi_label_classification") => Activation::Sigmoid,
            _ => Activation::Softmax,
        });
        let description = format!(
            "{} sequence classifier ({} layers, hidden {}), {}",
            model.arch.name(),
            model.blocks.len(),
            model.hidden,
            wpath.display()
        );
        Self::from_parts(
            model,
            dir,
            labels,
            activation,
            &dir.display().to_string(),
            description,
            opts,
        )
    }

    /// Assembles a scorer from a loaded model whose tokenizer lives in `tokenizer_dir`.
    pub(crate) fn from_parts(
        model: EncoderClassifier,
        tokenizer_dir: &Path,
        labels: Vec<String>,
        activation: Activation,
        id: &str,
        description: String,
        opts: ClassifierOptions,
    ) -> Result<Self, LoadError> {
        if labels.len() != model.num_labels {
            return Err(LoadError::Config(format!(
                "{id}: {} label names for a head with {} outputs",
                labels.len(),
                model.num_labels
            )));
        }
        let max = max_tokens(&model, tokenizer_dir, opts.max_length);
        let tokenizer = TextTokenizer::from_dir(tokenizer_dir, max)?;
        let mut info = ScorerInfo::new(id, labels, activation);
        info.max_tokens = Some(max);
        info.description = description;
        Ok(Self {
            model,
            tokenizer,
            info,
            opts,
        })
    }

    /// The underlying model.
    pub fn model(&self) -> &EncoderClassifier {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Raw logits (before the activation) and the tokenization of each text, in input order.
    pub fn logits(&self, texts: &[&str]) -> Result<(Vec<Vec<f32>>, Vec<Encoded>), ScoreError> {
        let enc = self.tokenizer.encode(texts).map_err(ScoreError::Tokenize)?;
        let out = run_batched(
            &enc,
            self.opts.batch_size,
            self.opts.parallel_batches,
            self.model.pad_id,
            |rows, lengths| {
                self.model
                    .classify(rows, lengths)
                    .and_then(|t| t.to_vec2::<f32>())
            },
        )?;
        Ok((out, enc))
    }
}

/// Runs `run` over length-sorted, right-padded batches of `enc` (longest first, so each batch
/// pads to nearly its own length), `parallel` batches at a time, and returns one result row
/// per text in input order.
pub(crate) fn run_batched(
    enc: &[Encoded],
    batch_size: usize,
    parallel: usize,
    pad_id: u32,
    run: impl Fn(&[Vec<u32>], &[usize]) -> candle_core::Result<Vec<Vec<f32>>> + Sync,
) -> Result<Vec<Vec<f32>>, ScoreError> {
    let mut order: Vec<usize> = (0..enc.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(enc[i].ids.len()));
    // A small call (a server batch) is cut into several length-sorted pieces per thread: every
    // thread gets work, and each piece pads only to its own longest text.
    let batch_size = if parallel > 1 {
        batch_size.min(enc.len().div_ceil(parallel * 4).max(4))
    } else {
        batch_size
    };
    let chunks: Vec<&[usize]> = order.chunks(batch_size.max(1)).collect();
    let one = |chunk: &[usize]| -> Result<Vec<Vec<f32>>, ScoreError> {
        let l = chunk.iter().map(|&i| enc[i].ids.len()).max().unwrap_or(0);
        let lengths: Vec<usize> = chunk.iter().map(|&i| enc[i].ids.len()).collect();
        let rows: Vec<Vec<u32>> = chunk
            .iter()
            .map(|&i| {
                let mut r = enc[i].ids.clone();
                r.resize(l, pad_id);
                r
            })
            .collect();
        let out = run(&rows, &lengths).map_err(|e| ScoreError::Model(e.to_string()))?;
        if out.len() != chunk.len() {
            return Err(ScoreError::Model(format!(
                "{} outputs for a batch of {}",
                out.len(),
                chunk.len()
            )));
        }
        Ok(out)
    };
    let results: Vec<Vec<Vec<f32>>> = if parallel > 1 && chunks.len() > 1 {
        use rayon::prelude::*;
        chunks
            .par_iter()
            .map(|c| one(c))
            .collect::<Result<_, _>>()?
    } else {
        chunks.iter().map(|c| one(c)).collect::<Result<_, _>>()?
    };
    let mut out = vec![Vec::new(); enc.len()];
    for (chunk, rows) in chunks.iter().zip(results) {
        for (&i, row) in chunk.iter().zip(rows) {
            out[i] = row;
        }
    }
    Ok(out)
}

impl Scorer for EncoderScorer {
    fn info(&self) -> &ScorerInfo {
        &self.info
    }

    fn score(&self, texts: &[&str]) -> Result<Vec<TextScore>, ScoreError> {
        let (logits, enc) = self.logits(texts)?;
        Ok(logits
            .into_iter()
            .zip(enc)
            .map(|(mut values, e)| {
                self.info.activation.apply(&mut values);
                TextScore {
                    values,
                    tokens: e.ids.len(),
                    truncated: e.truncated,
                }
            })
            .collect())
    }
}
