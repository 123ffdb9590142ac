//! One optimizer step: the loss of a batch (micro-batches whose gradients are accumulated, each
//! scaled so the whole is the mean over every predicted token), gradient clipping, AdamW.

use crate::loss::causal_lm_loss_sum;
use crate::model::Trainable;
use crate::optim::{clip_grad_norm, AdamW};
use candle_core::{Result, Tensor, Var};

/// What a step measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// The mean next-token loss over the batch, before the update.
    pub loss: f64,
    /// The gradients' global norm before clipping.
    pub grad_norm: f64,
    /// Tokens predicted.
    pub tokens: usize,
    /// Whether the update was applied (not when the loss or the gradients are not finite).
    pub applied: bool,
}

/// Runs one step over `micro` (token-id batches `[b, l]`) at learning rate `lr`, clipping the
/// gradients of `vars` to `max_grad_norm` (none when `None`).
pub fn step(
    model: &dyn Trainable,
    opt: &mut AdamW,
    vars: &[Var],
    micro: &[Tensor],
    lr: f64,
    max_grad_norm: Option<f64>,
) -> Result<StepStats> {
    let total: usize = micro
        .iter()
        .map(|m| m.dims2().map(|(b, l)| b * l.saturating_sub(1)))
        .sum::<Result<usize>>()?;
    let mut acc: Vec<Option<Tensor>> = vec![None; vars.len()];
    let mut loss = 0.0f64;
    for ids in micro {
        let logits = model.forward(ids)?;
        let (sum, _) = causal_lm_loss_sum(&logits, ids)?;
        let scaled = (sum / total as f64)?;
        loss += scaled.to_scalar::<f32>()? as f64;
        let grads = scaled.backward()?;
        for (slot, v) in acc.iter_mut().zip(vars) {
            if let Some(g) = grads.get(v.as_tensor()) {
                *slot = Some(match slot.take() {
                    Some(prev) => (prev + g)?,
                    None => g.clone(),
                });
            }
        }
    }
    let grad_norm = clip_grad_norm(&mut acc, max_grad_norm.unwrap_or(f64::INFINITY))?;
    // A loss or gradient that is not a number would poison every weight: no update.
    let applied = loss.is_finite() && grad_norm.is_finite();
    if applied {
        opt.step(&acc, lr)?;
    }
    Ok(StepStats {
        loss,
        grad_norm,
        tokens: total,
        applied,
    })
}
