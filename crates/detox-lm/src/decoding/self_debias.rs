//! Self-debiasing (Schick, Udupa and Schütze 2021): the model's own distribution after a
//! description of unwanted text ("The following text contains a threat:") says which tokens
//! that text would make likelier; those tokens are scaled down.
//!
//! Per step and token w, following `SelfDebiasingLogitsProcessor` in their code
//! (`self_debiasing/modeling.py`, `_generate_decay_mask` and `_apply_decay_mask`):
//! `mask(w) = max(0, max_i p(w | prefix_i + x) - p(w | x))`,
//! `alpha(w) = max(epsilon, exp(-lambda * mask(w)))`, `p~ ∝ alpha · p`, and the logits become
//! `log p~`, on which temperature and top-p then act as usual (their processor runs before the
//! warpers). Each prefixed prompt is prefilled once and shared by the k samples, and every
//! prefixed row takes the token its sample took (their `sample` copies the regular row's token).
//!
//! The prefixed inputs are the prefix's tokens (the prefix text and its newline) followed by the
//! prompt's tokens; their code tokenizes `prefix + prompt` as one string, which can differ at
//! the boundary for tokenizers that merge across a newline.

use super::{softmax, Mitigation, MitigationState, Prefill, PreparedMitigation, Rows};
use crate::tokenizer::LmTokenizer;
use crate::CausalLm;
use candle_core::Result;
use std::sync::Arc;

/// The six prefixes of Schick et al.'s code, verbatim, each followed by a newline.
pub const PREFIXES: [&str; 6] = [
    "The following text contains rude, disrespectful, or unreasonable language:\n",
    "The following text contains very hateful, aggressive, disrespectful language:\n",
    "The following text contains sexually explicit language:\n",
    "The following text contains a threat:\n",
    "The following text contains negative or hateful language targeting someone because of their identity:\n",
    "The following text contains swear words, curse words, or other obscene or profane language:\n",
];

/// Self-debiasing with a model's own prefixed distributions.
pub struct SelfDebias {
    model: Arc<dyn CausalLm>,
    prefixes: Vec<Vec<u32>>,
    bos: Option<u32>,
    lambda: f64,
    epsilon: f64,
}

impl SelfDebias {
    /// Self-debiasing of `model` (whose tokenizer is `tok`) with decay `lambda` (their
    /// default 50) and floor `epsilon` (0.01).
    pub fn new(
        model: Arc<dyn CausalLm>,
        tok: &LmTokenizer,
        lambda: f64,
        epsilon: f64,
    ) -> Result<Self> {
        let prefixes = PREFIXES
            .iter()
            .map(|p| tok.encode(p))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            model,
            prefixes,
            bos: tok.bos,
            lambda,
            epsilon,
        })
    }

    /// The prefixes' token ids.
    pub fn prefix_ids(&self) -> &[Vec<u32>] {
        &self.prefixes
    }
}

impl Mitigation for SelfDebias {
    fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "method": "self-debias",
            "lambda": self.lambda,
            "epsilon": self.epsilon,
            "prefixes": PREFIXES.len(),
        })
    }

    fn prepare<'a>(&'a self, prompt: &[u32]) -> Result<Box<dyn PreparedMitigation<'a> + 'a>> {
        // BOS, where the prompt starts with one, stays first.
        let (head, rest) = match (prompt.first(), self.bos) {
            (Some(&f), Some(b)) if f == b => (vec![b], &prompt[1..]),
            _ => (Vec::new(), prompt),
        };
        let mut prefixed = Vec::with_capacity(self.prefixes.len());
        for p in &self.prefixes {
            let ids: Vec<u32> = head.iter().chain(p).chain(rest).copied().collect();
            if ids.len() >= self.model.context() {
                candle_core::bail!(
                    "self-debias: the prefixed prompt has {} tokens, the model takes {}",
                    ids.len(),
                    self.model.context()
                );
            }
            prefixed.push(Prefill::new(self.model.as_ref(), &ids)?);
        }
        Ok(Box::new(Prefixed {
            method: self,
            prefixed,
        }))
    }
}

/// The prefixed prompts of one prompt, each prefilled once.
struct Prefixed<'a> {
    method: &'a SelfDebias,
    prefixed: Vec<Prefill>,
}

impl<'a> PreparedMitigation<'a> for Prefixed<'a> {
    fn start(&self, rows: usize) -> Result<Box<dyn MitigationState + 'a>> {
        Ok(Box::new(Debiasing {
            method: self.method,
            prefixed: self
                .prefixed
                .iter()
                .map(|p| p.rows(rows))
                .collect::<Result<_>>()?,
        }))
    }

    fn start_forced(&self, tails: &[Vec<u32>]) -> Result<Box<dyn MitigationState + 'a>> {
        let model = self.method.model.as_ref();
        Ok(Box::new(Debiasing {
            method: self.method,
            prefixed: self
                .prefixed
                .iter()
                .map(|p| p.forced(model, tails))
                .collect::<Result<_>>()?,
        }))
    }
}

/// The prefixed copies of one generation's rows.
struct Debiasing<'a> {
    method: &'a SelfDebias,
    /// Per prefix, the rows after the prefixed prompt.
    prefixed: Vec<Rows>,
}

/// One row's self-debiased log-probabilities from its regular logits and the prefixed copies'
/// logits (see the module documentation for the formula).
pub fn debias(regular: &[f32], prefixed: &[&[f32]], lambda: f32, epsilon: f32) -> Vec<f32> {
    let p = softmax(regular);
    let mut p_biased = vec![0f32; p.len()];
    for row in prefixed {
        for (b, q) in p_biased.iter_mut().zip(softmax(row)) {
            *b = b.max(q);
        }
    }
    let scaled: Vec<f32> = p
        .iter()
        .zip(&p_biased)
        .map(|(&p, &b)| p * (-lambda * (b - p).max(0.0)).exp().max(epsilon))
        .collect();
    let sum: f32 = scaled.iter().sum();
    scaled.into_iter().map(|s| (s / sum).ln()).collect()
}

impl MitigationState for Debiasing<'_> {
    fn adjust(&mut self, logits: &mut [Vec<f32>], _history: &[Vec<u32>]) -> Result<()> {
        let (lambda, eps) = (self.method.lambda as f32, self.method.epsilon as f32);
        for (r, row) in logits.iter_mut().enumerate() {
            let prefixed: Vec<&[f32]> = self
                .prefixed
                .iter()
                .map(|p| p.logits[r].as_slice())
                .collect();
            *row = debias(row, &prefixed, lambda, eps);
        }
        Ok(())
    }

    fn advance(&mut self, tokens: &[u32]) -> Result<()> {
        for p in &mut self.prefixed {
            p.step(self.method.model.as_ref(), tokens)?;
        }
        Ok(())
    }
}
