//! The causal language-model loss, as `transformers`' `ForCausalLMLoss` computes it for
//! `model(ids, labels=ids)`: cross-entropy of the logits at positions `0..l-1` against the
//! tokens at `1..l`, averaged over every predicted token of the batch.

use candle_core::{Result, Tensor, D};

/// The summed cross-entropy of next-token predictions and how many tokens it sums over
/// (`logits` `[b, l, vocab]`, `ids` `[b, l]`). Summing lets accumulated micro-batches be
/// averaged over all their tokens at once.
pub fn causal_lm_loss_sum(logits: &Tensor, ids: &Tensor) -> Result<(Tensor, usize)> {
    let (b, l, v) = logits.dims3()?;
    let pred = logits.narrow(1, 0, l - 1)?.reshape((b * (l - 1), v))?;
    let target = ids.narrow(1, 1, l - 1)?.flatten_all()?;
    let logp = candle_nn::ops::log_softmax(&pred, D::Minus1)?;
    let picked = logp.gather(&target.unsqueeze(1)?, 1)?;
    Ok((picked.sum_all()?.neg()?, b * (l - 1)))
}

/// The mean next-token cross-entropy of a batch.
pub fn causal_lm_loss(logits: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let (sum, n) = causal_lm_loss_sum(logits, ids)?;
    sum / n as f64
}
