//! DExperts (Liu et al. 2021): the base model's logits, cut to their top-p nucleus, steered by
//! the difference between an expert (trained on non-toxic text) and an anti-expert (toxic).
//!
//! Per step, following their `generation/dexperts_generation.py`:
//! `z = top_p_filter(z_base, filter_p) + alpha * (z_expert - z_anti)` with their defaults
//! `filter_p = 0.9`, `alpha = 2.0`; `top_p_filter` is transformers' `top_k_top_p_filtering`
//! (tokens sorted by logit; a token is dropped when the probability mass before it exceeds
//! `filter_p`). Temperature and detox's own `--top-p` then act on `z` as for any model, so with
//! the default `--top-p 0.9` the ensemble is cut once more; DExperts sampled the ensemble with
//! top-p 1.0 (`--top-p 1` reproduces that). Without an expert the base model stands in for it
//! (their anti-expert-only variant). The expert and anti-expert prefill the prompt once and
//! follow the token each sample takes.

use super::{softmax, Mitigation, MitigationState, Prefill, PreparedMitigation, Rows};
use crate::{CausalLm, LmError};
use candle_core::Tensor;
use std::sync::Arc;

/// DExperts with an optional expert and an anti-expert.
pub struct DExperts {
    expert: Option<Arc<dyn CausalLm>>,
    anti: Arc<dyn CausalLm>,
    alpha: f32,
    filter_p: f32,
    names: (Option<String>, String),
}

/// transformers' `top_k_top_p_filtering` with `top_p` on one row: tokens outside the nucleus
/// become -infinity.
pub fn top_p_filter(row: &[f32], top_p: f32) -> Vec<f32> {
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
    let p = softmax(row);
    let mut out = row.to_vec();
    let mut before = 0f32;
    for (i, &t) in order.iter().enumerate() {
        // Removed when the cumulative probability up to the previous token exceeds top_p (the
        // first token is always kept).
        if i > 0 && before > top_p {
            out[t] = f32::NEG_INFINITY;
        }
        before += p[t];
    }
    out
}

/// One row's DExperts logits.
pub fn combine(base: &[f32], expert: &[f32], anti: &[f32], alpha: f32, filter_p: f32) -> Vec<f32> {
    top_p_filter(base, filter_p)
        .into_iter()
        .zip(expert.iter().zip(anti))
        .map(|(b, (e, a))| b + alpha * (e - a))
        .collect()
}

/// A model's vocabulary size: the width of its logits for one token.
fn vocab(m: &dyn CausalLm) -> Result<usize, LmError> {
    let ids = Tensor::new(&[[0u32]], m.device())?;
    Ok(m.forward(&ids, &mut m.new_cache(), false)?.dim(1)?)
}

impl DExperts {
    /// DExperts steering of `base` with `anti` and, if given, `expert` (else the base model),
    /// weight `alpha`, base nucleus `filter_p`. `names` label them in `run.json` and errors.
    /// Experts whose vocabulary differs from the base model's are refused, naming both sizes.
    pub fn new(
        base: &dyn CausalLm,
        expert: Option<Arc<dyn CausalLm>>,
        anti: Arc<dyn CausalLm>,
        alpha: f32,
        filter_p: f32,
        names: (Option<String>, String),
    ) -> Result<Self, LmError> {
        let want = vocab(base)?;
        let models = [
            (
                expert.as_deref(),
                names.0.as_deref().unwrap_or("the expert"),
            ),
            (Some(anti.as_ref()), names.1.as_str()),
        ];
        for (model, name) in models {
            if let Some(m) = model {
                let have = vocab(m)?;
                if have != want {
                    return Err(LmError::Unsupported(format!(
                        "dexperts: {name}: its vocabulary has {have} tokens, the model's {want}: experts must share the model's tokenizer"
                    )));
                }
            }
        }
        Ok(Self {
            expert,
            anti,
            alpha,
            filter_p,
            names,
        })
    }
}

impl Mitigation for DExperts {
    fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "method": "dexperts",
            "expert": self.names.0,
            "anti": self.names.1,
            "alpha": self.alpha,
            "filter_p": self.filter_p,
        })
    }

    fn prepare<'a>(
        &'a self,
        prompt: &[u32],
    ) -> candle_core::Result<Box<dyn PreparedMitigation<'a> + 'a>> {
        let expert = match &self.expert {
            Some(m) => Some(Prefill::new(m.as_ref(), prompt)?),
            None => None,
        };
        let anti = Prefill::new(self.anti.as_ref(), prompt)?;
        Ok(Box::new(Primed {
            method: self,
            expert,
            anti,
        }))
    }
}

/// The experts after one prompt, each prefilled once.
struct Primed<'a> {
    method: &'a DExperts,
    expert: Option<Prefill>,
    anti: Prefill,
}

impl<'a> PreparedMitigation<'a> for Primed<'a> {
    fn start(&self, rows: usize) -> candle_core::Result<Box<dyn MitigationState + 'a>> {
        Ok(Box::new(Steering {
            method: self.method,
            expert: self.expert.as_ref().map(|e| e.rows(rows)).transpose()?,
            anti: self.anti.rows(rows)?,
        }))
    }

    fn start_forced(
        &self,
        tails: &[Vec<u32>],
    ) -> candle_core::Result<Box<dyn MitigationState + 'a>> {
        let m = self.method;
        let expert = match (&m.expert, &self.expert) {
            (Some(model), Some(e)) => Some(e.forced(model.as_ref(), tails)?),
            _ => None,
        };
        Ok(Box::new(Steering {
            method: m,
            expert,
            anti: self.anti.forced(m.anti.as_ref(), tails)?,
        }))
    }
}

/// The experts' caches and next-token logits for one generation's rows.
struct Steering<'a> {
    method: &'a DExperts,
    expert: Option<Rows>,
    anti: Rows,
}

impl MitigationState for Steering<'_> {
    fn adjust(
        &mut self,
        logits: &mut [Vec<f32>],
        _history: &[Vec<u32>],
    ) -> candle_core::Result<()> {
        // Vocabularies were checked equal when the method was built.
        for (r, row) in logits.iter_mut().enumerate() {
            let expert = self.expert.as_ref().map(|e| &e.logits[r]).unwrap_or(row);
            *row = combine(
                row,
                expert,
                &self.anti.logits[r],
                self.method.alpha,
                self.method.filter_p,
            );
        }
        Ok(())
    }

    fn advance(&mut self, tokens: &[u32]) -> candle_core::Result<()> {
        let m = self.method;
        if let (Some(model), Some(rows)) = (&m.expert, &mut self.expert) {
            rows.step(model.as_ref(), tokens)?;
        }
        self.anti.step(m.anti.as_ref(), tokens)
    }
}
