//! [`SentenceEncoder`]: mean-pooled sentence embeddings from a BERT-family encoder (the way
//! sentence-transformers pools all-MiniLM-L6-v2), the input of detox's trained heads.

use crate::classifier::{max_tokens, run_batched, weights_file};
use crate::models::config::HfConfig;
use crate::models::layers::masked_mean;
use crate::models::{load_encoder, EncoderClassifier, Weights};
use crate::tokenize::{Encoded, TextTokenizer};
use crate::LoadError;
use candle_core::{Device, Tensor};
use detox_core::ScoreError;
use std::path::Path;

/// How token states become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The mean over real tokens (sentence-transformers' pooling for MiniLM).
    Mean,
    /// The mean and the element-wise maximum over real tokens, concatenated.
    MeanMax,
}

impl Pooling {
    /// Parses `mean` or `mean+max`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "mean" => Some(Self::Mean),
            "mean+max" => Some(Self::MeanMax),
            _ => None,
        }
    }

    /// Its name in head specs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mean => "mean",
            Self::MeanMax => "mean+max",
        }
    }
}

/// An encoder that turns texts into fixed-size vectors.
pub struct SentenceEncoder {
    pooling: Pooling,
    model: EncoderClassifier,
    tokenizer: TextTokenizer,
    batch_size: usize,
    parallel: usize,
}

impl SentenceEncoder {
    /// Loads the encoder of a Hugging Face folder (a head, if any, is ignored).
    pub fn from_hf_dir(
        dir: &Path,
        batch_size: usize,
        max_length: Option<usize>,
    ) -> Result<Self, LoadError> {
        Self::from_hf_dir_with(dir, batch_size, max_length, &[])
    }

    /// As [`SentenceEncoder::from_hf_dir`], with some of the checkpoint's tensors replaced
    /// (by full name, e.g. `encoder.layer.5.output.dense.weight`): fine-tuned top layers.
    pub fn from_hf_dir_with(
        dir: &Path,
        batch_size: usize,
        max_length: Option<usize>,
        overrides: &[(String, Tensor)],
    ) -> Result<Self, LoadError> {
        let config = HfConfig::from_file(&dir.join("config.json"))?;
        let mut weights = Weights::load(&weights_file(dir)?, None, &Device::Cpu)?;
        for (name, t) in overrides {
            if !weights.contains_raw(name) {
                return Err(LoadError::Missing {
                    path: dir.display().to_string(),
                    what: format!("tensor `{name}` that the fine-tuned head replaces"),
                });
            }
            weights.insert(name, t.clone())?;
        }
        let model = load_encoder(&config, &weights, &Device::Cpu)?;
        let max = max_tokens(&model, dir, max_length);
        let tokenizer = TextTokenizer::from_dir(dir, max)?;
        Ok(Self {
            pooling: Pooling::Mean,
            model,
            tokenizer,
            batch_size: batch_size.max(1),
            parallel: 1,
        })
    }

    /// Runs up to `n` batches at once (see [`crate::ClassifierOptions::parallel_batches`]).
    pub fn with_parallel_batches(mut self, n: usize) -> Self {
        self.parallel = n.max(1);
        self
    }

    /// Pools with `pooling`.
    pub fn with_pooling(mut self, pooling: Pooling) -> Self {
        self.pooling = pooling;
        self
    }

    /// Embedding size.
    pub fn dim(&self) -> usize {
        match self.pooling {
            Pooling::Mean => self.model.hidden,
            Pooling::MeanMax => 2 * self.model.hidden,
        }
    }

    /// Transformer blocks of the encoder.
    pub fn num_layers(&self) -> usize {
        self.model.blocks.len()
    }

    /// Hidden size of the encoder (before pooling).
    pub fn hidden(&self) -> usize {
        self.model.hidden
    }

    /// For fine-tuning: the hidden states [B, L, H] of `texts` after all but the top `top`
    /// blocks, right-padded to the longest text, with each text's length in tokens.
    pub fn lower_states(
        &self,
        texts: &[&str],
        top: usize,
    ) -> Result<(Tensor, Vec<usize>), ScoreError> {
        let enc = self.tokenizer.encode(texts).map_err(ScoreError::Tokenize)?;
        let l = enc.iter().map(|e| e.ids.len()).max().unwrap_or(0).max(1);
        let lengths: Vec<usize> = enc.iter().map(|e| e.ids.len()).collect();
        let rows: Vec<Vec<u32>> = enc
            .iter()
            .map(|e| {
                let mut r = e.ids.clone();
                r.resize(l, self.model.pad_id);
                r
            })
            .collect();
        let keep = self.model.blocks.len().saturating_sub(top);
        let x = self
            .model
            .encode_lower(&rows, &lengths, keep)
            .map_err(|e| ScoreError::Model(e.to_string()))?;
        Ok((x, lengths))
    }

    /// The token limit.
    pub fn max_tokens(&self) -> usize {
        self.tokenizer.max_tokens()
    }

    /// Pooled hidden states over real tokens, one vector per text, in input order, with the
    /// tokenization of each text.
    pub fn embed_with_tokens(
        &self,
        texts: &[&str],
    ) -> Result<(Vec<Vec<f32>>, Vec<Encoded>), ScoreError> {
        let enc = self.tokenizer.encode(texts).map_err(ScoreError::Tokenize)?;
        let out = run_batched(
            &enc,
            self.batch_size,
            self.parallel,
            self.model.pad_id,
            |rows, lengths| {
                let hidden = self.model.encode(rows, lengths)?;
                let l = rows.first().map(|r| r.len()).unwrap_or(0);
                let mask: Vec<u32> = lengths
                    .iter()
                    .flat_map(|&n| (0..l).map(move |i| u32::from(i < n)))
                    .collect();
                let mask = Tensor::from_vec(mask, (rows.len(), l), self.model.device())?;
                let mean = masked_mean(&hidden, &mask)?;
                match self.pooling {
                    Pooling::Mean => mean.to_vec2::<f32>(),
                    Pooling::MeanMax => {
                        // Padding gets a huge negative offset so it never wins the maximum.
                        let m = mask.to_dtype(candle_core::DType::F32)?.unsqueeze(2)?;
                        let offset = ((m - 1.0)? * 1e9)?;
                        let max = hidden.broadcast_add(&offset)?.max(1)?;
                        Tensor::cat(&[&mean, &max], 1)?.to_vec2::<f32>()
                    }
                }
            },
        )?;
        Ok((out, enc))
    }

    /// Mean-pooled hidden states over real tokens, one vector per text, in input order.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ScoreError> {
        Ok(self.embed_with_tokens(texts)?.0)
    }
}
