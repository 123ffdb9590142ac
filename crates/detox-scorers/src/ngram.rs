//! [`NgramScorer`]: a fastText-style linear model on hashed word and character n-grams, for
//! corpus-scale filtering where a transformer is too slow (hundreds of thousands of texts a
//! second on one core). `detox train --model ngram` writes it; `--scorer fast` is the built-in one.
//!
//! Features of a text: lower-cased word unigrams and bigrams (words are runs of letters and
//! digits) and character 3- to 5-grams of each whitespace token wrapped in `<` `>`, each hashed
//! (FNV-1a, with a namespace byte) into one of `2^bits` buckets and weighted `1/sqrt(count)`.
//! Scores are `sigmoid(W x + b)` per attribute, then an optional isotonic calibration.
//!
//! A model folder holds `detox-ngram.json` ([`NgramSpec`]) and `ngram.safetensors` (`w`:
//! [buckets, attributes], `b`: [attributes]).

use crate::folder::{read_model_folder, tensor_with_shape, Calibration};
use crate::LoadError;
use detox_core::metrics::Isotonic;
use detox_core::{Activation, ScoreError, Scorer, ScorerInfo, TextScore};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The spec file of an n-gram model folder.
pub const NGRAM_SPEC: &str = "detox-ngram.json";
/// The weights file of an n-gram model folder.
pub const NGRAM_WEIGHTS: &str = "ngram.safetensors";
/// The format tag this version reads and writes.
pub const NGRAM_FORMAT: &str = "detox-ngram/1";

/// What `detox-ngram.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NgramSpec {
    /// Always [`NGRAM_FORMAT`].
    pub format: String,
    /// log2 of the number of hash buckets.
    pub bits: u32,
    /// Output attributes, in order.
    pub attributes: Vec<String>,
    /// Per-attribute monotone maps from the model's probability to the target scale.
    #[serde(default)]
    pub calibration: BTreeMap<String, Isotonic>,
    /// Provenance.
    #[serde(default)]
    pub training: serde_json::Value,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(ns: u8, parts: &[&[u8]]) -> u64 {
    let mut h = FNV_OFFSET;
    h ^= ns as u64;
    h = h.wrapping_mul(FNV_PRIME);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0x20;
            h = h.wrapping_mul(FNV_PRIME);
        }
        for &b in *p {
            h ^= b as u64;
            h = h.wrapping_mul(FNV_PRIME);
        }
    }
    h
}

/// The hashed features of a text: (bucket, weight) pairs, weights summing in square to 1.
pub fn features(text: &str, bits: u32) -> Vec<(u32, f32)> {
    let lower = text.to_lowercase();
    let mask = (1u64 << bits) - 1;
    let mut out: Vec<u32> = Vec::with_capacity(64);
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    for w in &words {
        out.push((fnv(b'w', &[w.as_bytes()]) & mask) as u32);
    }
    for pair in words.windows(2) {
        out.push((fnv(b'b', &[pair[0].as_bytes(), pair[1].as_bytes()]) & mask) as u32);
    }
    for tok in lower.split_whitespace() {
        let chars: Vec<char> = std::iter::once('<')
            .chain(tok.chars())
            .chain(std::iter::once('>'))
            .collect();
        for n in 3..=5 {
            if chars.len() < n {
                continue;
            }
            for g in chars.windows(n) {
                let s: String = g.iter().collect();
                out.push((fnv(b'c', &[s.as_bytes()]) & mask) as u32);
            }
        }
    }
    if out.is_empty() {
        return Vec::new();
    }
    let w = 1.0 / (out.len() as f32).sqrt();
    out.into_iter().map(|b| (b, w)).collect()
}

/// A linear n-gram model behind the [`Scorer`] trait.
pub struct NgramScorer {
    spec: NgramSpec,
    /// Row-major [buckets, k].
    w: Vec<f32>,
    b: Vec<f32>,
    calibration: Calibration,
    info: ScorerInfo,
}

impl std::fmt::Debug for NgramScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NgramScorer")
            .field("info", &self.info)
            .finish()
    }
}

impl NgramScorer {
    /// Loads a model folder.
    pub fn load(dir: &Path) -> Result<Self, LoadError> {
        let (text, bytes) = read_model_folder(dir, NGRAM_SPEC, NGRAM_WEIGHTS)?;
        Self::from_parts(&text, &bytes, &dir.display().to_string())
    }

    /// Builds a scorer from a spec's text and the weights' safetensors bytes.
    pub fn from_parts(spec_text: &str, bytes: &[u8], id: &str) -> Result<Self, LoadError> {
        let spec: NgramSpec =
            serde_json::from_str(spec_text).map_err(|e| LoadError::Config(format!("{id}: {e}")))?;
        if spec.format != NGRAM_FORMAT || !(8..=24).contains(&spec.bits) {
            return Err(LoadError::Config(format!(
                "{id}: not a `{NGRAM_FORMAT}` spec with 8 to 24 bits"
            )));
        }
        let k = spec.attributes.len();
        let ts = candle_core::safetensors::load_buffer(bytes, &candle_core::Device::Cpu)?;
        let get = |n: &str, shape: &[usize]| -> Result<Vec<f32>, LoadError> {
            Ok(tensor_with_shape(&ts, n, shape, id)?
                .flatten_all()?
                .to_vec1::<f32>()?)
        };
        let w = get("w", &[1usize << spec.bits, k])?;
        let b = get("b", &[k])?;
        Self::new(spec, w, b, id)
    }

    /// Builds a scorer from weights in memory (`w` row-major [2^bits, k]).
    pub fn new(spec: NgramSpec, w: Vec<f32>, b: Vec<f32>, id: &str) -> Result<Self, LoadError> {
        let k = spec.attributes.len();
        if w.len() != (1usize << spec.bits) * k || b.len() != k {
            return Err(LoadError::Config(format!(
                "{id}: weights do not match the spec"
            )));
        }
        let calibration = Calibration::new(&spec.attributes, &spec.calibration);
        let mut info = ScorerInfo::new(id, spec.attributes.clone(), Activation::Sigmoid);
        info.description = format!(
            "linear model on hashed word and character n-grams (2^{} buckets)",
            spec.bits
        );
        Ok(Self {
            spec,
            w,
            b,
            calibration,
            info,
        })
    }

    /// The spec.
    pub fn spec(&self) -> &NgramSpec {
        &self.spec
    }

    /// Logits of one text.
    pub fn logits(&self, text: &str) -> Vec<f32> {
        let k = self.b.len();
        let mut z = self.b.clone();
        for (f, x) in features(text, self.spec.bits) {
            let row = &self.w[f as usize * k..][..k];
            for (zi, wi) in z.iter_mut().zip(row) {
                *zi += x * wi;
            }
        }
        z
    }
}

impl Scorer for NgramScorer {
    fn info(&self) -> &ScorerInfo {
        &self.info
    }

    fn score(&self, texts: &[&str]) -> Result<Vec<TextScore>, ScoreError> {
        use rayon::prelude::*;
        Ok(texts
            .par_iter()
            .map(|t| {
                let mut values = self.logits(t);
                Activation::Sigmoid.apply(&mut values);
                self.calibration.apply(&mut values);
                TextScore {
                    values,
                    tokens: t.split_whitespace().count(),
                    truncated: false,
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_normalised_case_insensitive_and_stable() {
        let a = features("You IDIOT!", 16);
        let b = features("you idiot!", 16);
        assert_eq!(a, b);
        let norm: f32 = a.iter().map(|(_, w)| w * w).sum();
        assert!((norm - 1.0).abs() < 1e-5);
        assert!(features("", 16).is_empty());
        // Obfuscation still shares character n-grams with the plain word.
        let plain: std::collections::HashSet<u32> =
            features("idiot", 20).into_iter().map(|x| x.0).collect();
        let obf: std::collections::HashSet<u32> =
            features("id1ot", 20).into_iter().map(|x| x.0).collect();
        assert!(plain.intersection(&obf).count() >= 2);
        assert!(a.iter().all(|(f, _)| *f < 1 << 16));
    }

    #[test]
    fn scores_are_the_sigmoid_of_the_weighted_sum() {
        let spec = NgramSpec {
            format: NGRAM_FORMAT.into(),
            bits: 16,
            attributes: vec!["toxicity".into()],
            calibration: BTreeMap::new(),
            training: serde_json::Value::Null,
        };
        let mut w = vec![0.0; 1 << 16];
        for (f, _) in features("bad", 16) {
            w[f as usize] = 1.0;
        }
        let s = NgramScorer::new(spec, w, vec![-1.0], "t").unwrap();
        let out = s.score(&["bad", "good"]).unwrap();
        let feats = features("bad", 16);
        let z: f32 = -1.0 + feats.iter().map(|(_, x)| x).sum::<f32>();
        assert!((out[0].values[0] - detox_core::sigmoid(z)).abs() < 1e-6);
        assert!(out[0].values[0] > out[1].values[0]);
    }
}
