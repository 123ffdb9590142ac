//! The loss of whole texts under a local model, with its decoding-time methods or without:
//! what the side-effect audits compare group by group (Welbl et al. 2021, §5: detoxification
//! raises the LM loss most on text about marginalized groups and on African-American English).
//!
//! A text is scored after the model's BOS token (its first token is predicted too), as one
//! row of a padded batch on BOS's cache (padding after a text cannot change it: attention is
//! causal). Under methods the loss is that of the distribution the mitigated model samples
//! from (before temperature and top-p): [`crate::decoding::PreparedPrompt::mitigated_nll`]. A
//! token a method never lets through (the word filter's banned sequences) has probability 0:
//! such a text is **blocked**, its loss infinite, and the corpus figures leave it out and count
//! it ([`CorpusLoss::blocked`]).

use crate::decoding::{Mitigation, PreparedPrompt};
use crate::tokenizer::LmTokenizer;
use crate::{CausalLm, LmError};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// One text's loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TextLoss {
    /// Negative log-likelihood of its tokens, in nats, summed (infinite: blocked).
    pub nll: f64,
    /// Its tokens (BOS not counted).
    pub tokens: usize,
    /// Its UTF-8 bytes.
    pub bytes: usize,
}

impl TextLoss {
    /// Whether a method gives one of its tokens probability 0.
    pub fn blocked(&self) -> bool {
        self.nll.is_infinite()
    }
}

/// A corpus's loss: the ratio of sums over its texts, as lm-evaluation-harness aggregates
/// (`lm_eval/api/metrics.py`, `weighted_perplexity` and `bits_per_byte`: the summed
/// log-likelihood divided by the summed tokens or bytes), over the texts not blocked.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CorpusLoss {
    /// Texts in the corpus.
    pub texts: usize,
    /// Texts left out because a method blocks one of their tokens.
    pub blocked: usize,
    /// Nats per token.
    pub nll_per_token: f64,
    /// Bits per UTF-8 byte.
    pub bits_per_byte: f64,
}

/// The corpus figures of `losses` (NaN figures when every text is blocked or empty).
pub fn corpus_loss(losses: &[TextLoss]) -> CorpusLoss {
    let kept: Vec<&TextLoss> = losses.iter().filter(|l| !l.blocked()).collect();
    let nll: f64 = kept.iter().map(|l| l.nll).sum();
    let tokens: usize = kept.iter().map(|l| l.tokens).sum();
    let bytes: usize = kept.iter().map(|l| l.bytes).sum();
    let ratio = |n: usize| {
        if n == 0 {
            f64::NAN
        } else {
            nll / n as f64
        }
    };
    CorpusLoss {
        texts: losses.len(),
        blocked: losses.len() - kept.len(),
        nll_per_token: ratio(tokens),
        bits_per_byte: ratio(bytes) / std::f64::consts::LN_2,
    }
}

/// Texts scored in one batch (sorted by length first, so a batch pads little).
pub const BATCH: usize = 16;

/// The loss of each of `texts` under `model` (tokenizer `tok`) changed by `methods` (none:
/// the model itself), in input order.
pub fn text_losses(
    model: &dyn CausalLm,
    tok: &LmTokenizer,
    methods: &[&dyn Mitigation],
    texts: &[&str],
) -> Result<Vec<TextLoss>, LmError> {
    let bos = tok.bos.ok_or_else(|| {
        LmError::Unsupported(
            "the loss of a whole text is scored after the BOS token, and this model has none"
                .into(),
        )
    })?;
    let ids: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| tok.encode(t))
        .collect::<candle_core::Result<_>>()?;
    let room = model.context().saturating_sub(1);
    if let Some((i, t)) = ids.iter().enumerate().find(|(_, t)| t.len() > room) {
        return Err(LmError::Unsupported(format!(
            "text {} has {} tokens; the model takes {} after BOS",
            i + 1,
            t.len(),
            room
        )));
    }
    let prepared = PreparedPrompt::new(model, methods, &[bos])?;
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| ids[i].len());
    let mut out = vec![
        TextLoss {
            nll: 0.0,
            tokens: 0,
            bytes: 0
        };
        texts.len()
    ];
    // Batches run side by side on the process's thread pool (candle's kernels are
    // single-threaded inside each, see `detox_spec::configure_threads`).
    let batches: Vec<&[usize]> = order.chunks(BATCH).collect();
    let nll: Vec<Vec<f64>> = batches
        .par_iter()
        .map(|chunk| {
            let tails: Vec<Vec<u32>> = chunk.iter().map(|&i| ids[i].clone()).collect();
            if methods.is_empty() {
                prepared.base_nll(&tails)
            } else {
                prepared.mitigated_nll(&tails)
            }
        })
        .collect::<candle_core::Result<_>>()?;
    for (chunk, nll) in batches.iter().zip(nll) {
        for (&i, n) in chunk.iter().zip(nll) {
            out[i] = TextLoss {
                nll: n,
                tokens: ids[i].len(),
                bytes: texts[i].len(),
            };
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_figures_are_ratios_of_sums_without_blocked_texts() {
        let l = |nll: f64, tokens, bytes| TextLoss { nll, tokens, bytes };
        let c = corpus_loss(&[l(2.0, 1, 4), l(6.0, 3, 4), l(f64::INFINITY, 2, 9)]);
        assert_eq!((c.texts, c.blocked), (3, 1));
        // (2 + 6) / (1 + 3), not the mean of 2 and 2.
        assert!((c.nll_per_token - 2.0).abs() < 1e-12);
        assert!((c.bits_per_byte - 1.0 / std::f64::consts::LN_2).abs() < 1e-12);
        let c = corpus_loss(&[l(f64::INFINITY, 2, 9)]);
        assert!(c.nll_per_token.is_nan() && c.blocked == 1);
    }
}
