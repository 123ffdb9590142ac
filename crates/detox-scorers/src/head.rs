//! [`HeadScorer`]: a small trained head (linear or one hidden layer) on mean-pooled embeddings
//! of a registry encoder, with per-attribute isotonic calibration to a target scale. This is
//! the format `detox train` writes and the built-in scorer uses.
//!
//! A head folder holds `detox-head.json` ([`HeadSpec`]) and `head.safetensors` (`w1`, `b1`,
//! and, with a hidden layer, `w2`, `b2`). The encoder is not in the folder: the spec names it
//! (a registry name such as `all-minilm-l6-v2`) with the sha256 of its weights, and the caller
//! passes its local path.

use crate::embed::{Pooling, SentenceEncoder};
use crate::folder::{read_model_folder, tensor_with_shape, Calibration};
use crate::LoadError;
use candle_core::{Device, Tensor};
use detox_core::metrics::Isotonic;
use detox_core::{Activation, ScoreError, Scorer, ScorerInfo, TextScore};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The spec file of a head folder.
pub const HEAD_SPEC: &str = "detox-head.json";
/// The weights file of a head folder.
pub const HEAD_WEIGHTS: &str = "head.safetensors";

/// Names in `head.safetensors` that contain this replace the encoder's tensors of the same
/// name (the top layers `detox train --fine-tune-layers` tuned).
pub const ENCODER_OVERRIDE_PREFIX: &str = "encoder.layer.";
/// The format tag this version reads and writes.
pub const HEAD_FORMAT: &str = "detox-head/1";

/// What `detox-head.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadSpec {
    /// Always [`HEAD_FORMAT`].
    pub format: String,
    /// The encoder's registry name (or a path, for heads on local encoders).
    pub encoder: String,
    /// sha256 of the encoder's weights file the head was trained on.
    pub encoder_sha256: Option<String>,
    /// How token states become one vector: `mean` or `mean+max`.
    pub pooling: String,
    /// Token limit used in training (texts are cut there when scoring too).
    pub max_tokens: usize,
    /// Output attributes, in order.
    pub attributes: Vec<String>,
    /// Hidden units (0 for a linear head).
    pub hidden: usize,
    /// Per-attribute monotone maps from the head's sigmoid output to the target scale.
    #[serde(default)]
    pub calibration: BTreeMap<String, Isotonic>,
    /// Provenance: data, seed, command, dev metrics.
    #[serde(default)]
    pub training: serde_json::Value,
}

impl HeadSpec {
    /// Parses and checks a spec.
    pub fn parse(text: &str, source: &str) -> Result<Self, LoadError> {
        let spec: HeadSpec =
            serde_json::from_str(text).map_err(|e| LoadError::Config(format!("{source}: {e}")))?;
        if spec.format != HEAD_FORMAT {
            return Err(LoadError::Config(format!(
                "{source}: format `{}` is not `{HEAD_FORMAT}`",
                spec.format
            )));
        }
        if Pooling::parse(&spec.pooling).is_none() {
            return Err(LoadError::Config(format!(
                "{source}: pooling `{}` is not supported (`mean` or `mean+max`)",
                spec.pooling
            )));
        }
        Ok(spec)
    }
}

/// The head's layers: `sigmoid(W2 relu(W1 x + b1) + b2)`, or `sigmoid(W1 x + b1)`.
#[derive(Debug, Clone)]
pub struct Mlp {
    w1: Tensor,
    b1: Tensor,
    second: Option<(Tensor, Tensor)>,
}

impl Mlp {
    /// Builds the head from its tensors (`w1` is [hidden or outputs, dim]).
    pub fn new(w1: Tensor, b1: Tensor, second: Option<(Tensor, Tensor)>) -> Self {
        Self { w1, b1, second }
    }

    /// Loads `w1`, `b1` (and `w2`, `b2` when `hidden > 0`) from safetensors bytes.
    pub fn from_safetensors(bytes: &[u8], spec: &HeadSpec, dim: usize) -> Result<Self, LoadError> {
        let ts = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)?;
        let get = |name: &str, shape: &[usize]| tensor_with_shape(&ts, name, shape, HEAD_WEIGHTS);
        let k = spec.attributes.len();
        if spec.hidden == 0 {
            Ok(Self::new(get("w1", &[k, dim])?, get("b1", &[k])?, None))
        } else {
            let h = spec.hidden;
            Ok(Self::new(
                get("w1", &[h, dim])?,
                get("b1", &[h])?,
                Some((get("w2", &[k, h])?, get("b2", &[k])?)),
            ))
        }
    }

    /// Logits [N, k] of embeddings [N, dim].
    pub fn logits(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let h = x.matmul(&self.w1.t()?)?.broadcast_add(&self.b1)?;
        match &self.second {
            None => Ok(h),
            Some((w2, b2)) => h.relu()?.matmul(&w2.t()?)?.broadcast_add(b2),
        }
    }
}

/// An encoder plus a trained head: the built-in scorer's shape.
pub struct HeadScorer {
    encoder: SentenceEncoder,
    mlp: Mlp,
    spec: HeadSpec,
    calibration: Calibration,
    info: ScorerInfo,
}

impl std::fmt::Debug for HeadScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadScorer")
            .field("info", &self.info)
            .finish()
    }
}

impl HeadScorer {
    /// Loads a head folder; `encoder_dir` is the local folder of the encoder the spec names.
    pub fn load(
        dir: &Path,
        encoder_dir: &Path,
        batch_size: usize,
        parallel: usize,
    ) -> Result<Self, LoadError> {
        let (text, bytes) = read_model_folder(dir, HEAD_SPEC, HEAD_WEIGHTS)?;
        Self::from_parts(
            &text,
            &bytes,
            encoder_dir,
            &dir.display().to_string(),
            batch_size,
            parallel,
        )
    }

    /// Builds a scorer from a spec's text and the head's safetensors bytes.
    pub fn from_parts(
        spec_text: &str,
        head_bytes: &[u8],
        encoder_dir: &Path,
        id: &str,
        batch_size: usize,
        parallel: usize,
    ) -> Result<Self, LoadError> {
        let spec = HeadSpec::parse(spec_text, id)?;
        let pooling = Pooling::parse(&spec.pooling).unwrap_or(Pooling::Mean);
        // Fine-tuned encoder layers travel in the head's file under their checkpoint names.
        let overrides: Vec<(String, Tensor)> =
            candle_core::safetensors::load_buffer(head_bytes, &Device::Cpu)?
                .into_iter()
                .filter(|(k, _)| k.contains(ENCODER_OVERRIDE_PREFIX))
                .collect();
        let encoder = SentenceEncoder::from_hf_dir_with(
            encoder_dir,
            batch_size,
            Some(spec.max_tokens),
            &overrides,
        )?
        .with_parallel_batches(parallel)
        .with_pooling(pooling);
        let mlp = Mlp::from_safetensors(head_bytes, &spec, encoder.dim())?;
        let calibration = Calibration::new(&spec.attributes, &spec.calibration);
        let mut info = ScorerInfo::new(id, spec.attributes.clone(), Activation::Sigmoid);
        info.max_tokens = Some(encoder.max_tokens());
        info.description = format!(
            "trained head ({} hidden units) on {}{} embeddings ({} pooling){}",
            spec.hidden,
            spec.encoder,
            if overrides.is_empty() {
                String::new()
            } else {
                format!(" (top layers fine-tuned: {} tensors)", overrides.len())
            },
            spec.pooling,
            if spec.calibration.is_empty() {
                ""
            } else {
                ", calibrated"
            }
        );
        Ok(Self {
            encoder,
            mlp,
            spec,
            calibration,
            info,
        })
    }

    /// The spec.
    pub fn spec(&self) -> &HeadSpec {
        &self.spec
    }

    /// Head probabilities before calibration, per text.
    pub fn raw_scores(&self, texts: &[&str]) -> Result<Vec<TextScore>, ScoreError> {
        let (emb, enc) = self.encoder.embed_with_tokens(texts)?;
        let n = emb.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let d = self.encoder.dim();
        let flat: Vec<f32> = emb.into_iter().flatten().collect();
        let logits = Tensor::from_vec(flat, (n, d), &Device::Cpu)
            .and_then(|x| self.mlp.logits(&x))
            .and_then(|t| t.to_vec2::<f32>())
            .map_err(|e| ScoreError::Model(e.to_string()))?;
        Ok(logits
            .into_iter()
            .zip(enc)
            .map(|(mut values, e)| {
                Activation::Sigmoid.apply(&mut values);
                TextScore {
                    values,
                    tokens: e.ids.len(),
                    truncated: e.truncated,
                }
            })
            .collect())
    }
}

impl Scorer for HeadScorer {
    fn info(&self) -> &ScorerInfo {
        &self.info
    }

    fn score(&self, texts: &[&str]) -> Result<Vec<TextScore>, ScoreError> {
        let mut out = self.raw_scores(texts)?;
        for s in &mut out {
            self.calibration.apply(&mut s.values);
        }
        Ok(out)
    }
}
