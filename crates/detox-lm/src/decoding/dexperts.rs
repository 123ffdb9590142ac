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

use super::{Mitigation, MitigationState};
use crate::cache::KvCache;
use crate::CausalLm;
use candle_core::{Result, Tensor};
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
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|&x| (x - max).exp()).sum();
    let mut out = row.to_vec();
    let mut before = 0f32;
    for (i, &t) in order.iter().enumerate() {
        // Removed when the cumulative probability up to the previous token exceeds top_p (the
        // first token is always kept).
        if i > 0 && before > top_p {
            out[t] = f32::NEG_INFINITY;
        }
        before += (row[t] - max).exp() / sum;
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

impl DExperts {
    /// DExperts steering with `anti` and, if given, `expert` (else the base model), weight
    /// `alpha`, base nucleus `filter_p`. `names` label them in `run.json`.
    pub fn new(
        expert: Option<Arc<dyn CausalLm>>,
        anti: Arc<dyn CausalLm>,
        alpha: f32,
        filter_p: f32,
        names: (Option<String>, String),
    ) -> Self {
        Self {
            expert,
            anti,
            alpha,
            filter_p,
            names,
        }
    }
}

fn prefill(model: &dyn CausalLm, prompt: &[u32], rows: usize) -> Result<(KvCache, Vec<Vec<f32>>)> {
    let mut cache = model.new_cache();
    let ids = Tensor::new(prompt, model.device())?.unsqueeze(0)?;
    let first = model.forward(&ids, &mut cache, false)?.to_vec2::<f32>()?;
    Ok((cache.repeat(rows)?, vec![first[0].clone(); rows]))
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

    fn start<'a>(&'a self, prompt: &[u32], rows: usize) -> Result<Box<dyn MitigationState + 'a>> {
        let expert = match &self.expert {
            Some(m) => Some(prefill(m.as_ref(), prompt, rows)?),
            None => None,
        };
        let anti = prefill(self.anti.as_ref(), prompt, rows)?;
        Ok(Box::new(Steering {
            method: self,
            expert,
            anti,
        }))
    }
}

/// The experts' caches and next-token logits for one generation's rows.
struct Steering<'a> {
    method: &'a DExperts,
    expert: Option<(KvCache, Vec<Vec<f32>>)>,
    anti: (KvCache, Vec<Vec<f32>>),
}

impl MitigationState for Steering<'_> {
    fn adjust(&mut self, logits: &mut [Vec<f32>], _history: &[Vec<u32>]) -> Result<()> {
        for (r, row) in logits.iter_mut().enumerate() {
            let anti = &self.anti.1[r];
            let expert = self.expert.as_ref().map(|e| &e.1[r]).unwrap_or(row);
            for (what, z) in [("expert", expert), ("anti-expert", anti)] {
                if z.len() != row.len() {
                    candle_core::bail!(
                        "dexperts: the {what}'s vocabulary has {} tokens, the model's {}: they must share a tokenizer",
                        z.len(),
                        row.len()
                    );
                }
            }
            *row = combine(row, expert, anti, self.method.alpha, self.method.filter_p);
        }
        Ok(())
    }

    fn advance(&mut self, tokens: &[u32]) -> Result<()> {
        let m = self.method;
        if let (Some(model), Some((cache, logits))) = (&m.expert, &mut self.expert) {
            let ids = Tensor::new(tokens, model.device())?.unsqueeze(1)?;
            *logits = model.forward(&ids, cache, false)?.to_vec2::<f32>()?;
        }
        let ids = Tensor::new(tokens, m.anti.device())?.unsqueeze(1)?;
        self.anti.1 = m
            .anti
            .forward(&ids, &mut self.anti.0, false)?
            .to_vec2::<f32>()?;
        Ok(())
    }
}
