//! [`SentenceEncoder`]: mean-pooled sentence embeddings from a BERT-family encoder (the way
//! sentence-transformers pools all-MiniLM-L6-v2), the input of detox's trained heads.

use crate::classifier::{max_tokens, weights_file};
use crate::models::config::HfConfig;
use crate::models::layers::masked_mean;
use crate::models::{load_encoder, EncoderClassifier, Weights};
use crate::tokenize::TextTokenizer;
use crate::LoadError;
use candle_core::{Device, Tensor};
use detox_core::ScoreError;
use std::path::Path;

/// An encoder that turns texts into fixed-size vectors.
pub struct SentenceEncoder {
    model: EncoderClassifier,
    tokenizer: TextTokenizer,
    batch_size: usize,
}

impl SentenceEncoder {
    /// Loads the encoder of a Hugging Face folder (a head, if any, is ignored).
    pub fn from_hf_dir(
        dir: &Path,
        batch_size: usize,
        max_length: Option<usize>,
    ) -> Result<Self, LoadError> {
        let config = HfConfig::from_file(&dir.join("config.json"))?;
        let weights = Weights::load(&weights_file(dir)?, None, &Device::Cpu)?;
        let model = load_encoder(&config, &weights, &Device::Cpu)?;
        let max = max_tokens(&model, dir, max_length);
        let tokenizer = TextTokenizer::from_dir(dir, max)?;
        Ok(Self {
            model,
            tokenizer,
            batch_size: batch_size.max(1),
        })
    }

    /// Embedding size.
    pub fn dim(&self) -> usize {
        self.model.hidden
    }

    /// Mean-pooled hidden states over real tokens, one vector per text, in input order.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ScoreError> {
        let enc = self.tokenizer.encode(texts).map_err(ScoreError::Tokenize)?;
        let mut order: Vec<usize> = (0..enc.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(enc[i].ids.len()));
        let mut out = vec![Vec::new(); enc.len()];
        for chunk in order.chunks(self.batch_size) {
            let l = chunk.iter().map(|&i| enc[i].ids.len()).max().unwrap_or(0);
            let lengths: Vec<usize> = chunk.iter().map(|&i| enc[i].ids.len()).collect();
            let rows: Vec<Vec<u32>> = chunk
                .iter()
                .map(|&i| {
                    let mut r = enc[i].ids.clone();
                    r.resize(l, self.model.pad_id);
                    r
                })
                .collect();
            let run = || -> candle_core::Result<Vec<Vec<f32>>> {
                let hidden = self.model.encode(&rows, &lengths)?;
                let mask: Vec<u32> = lengths
                    .iter()
                    .flat_map(|&n| (0..l).map(move |i| u32::from(i < n)))
                    .collect();
                let mask = Tensor::from_vec(mask, (rows.len(), l), self.model.device())?;
                masked_mean(&hidden, &mask)?.to_vec2::<f32>()
            };
            let vecs = run().map_err(|e| ScoreError::Model(e.to_string()))?;
            for (&i, v) in chunk.iter().zip(vecs) {
                out[i] = v;
            }
        }
        Ok(out)
    }
}
