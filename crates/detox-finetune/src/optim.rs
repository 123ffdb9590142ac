//! AdamW, gradient clipping and the learning-rate schedule, each as PyTorch and `transformers`
//! compute them, so a run can be checked step for step against a PyTorch one.

use candle_core::{Result, Tensor, Var};

/// AdamW's settings.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    /// β₁, β₂.
    pub betas: (f64, f64),
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay (for the parameters that take it).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// One parameter's optimizer state.
pub struct Slot {
    /// The parameter's name.
    pub name: String,
    /// The parameter.
    pub var: Var,
    /// Whether weight decay applies.
    pub decay: bool,
    /// First moment.
    pub m: Tensor,
    /// Second moment.
    pub v: Tensor,
}

/// AdamW as `torch.optim.AdamW` computes it (the single-tensor path of `torch/optim/adamw.py`):
/// `p ← p·(1 − lr·λ)`; `m ← β₁m + (1−β₁)g`; `v ← β₂v + (1−β₂)g²`;
/// `p ← p − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε)`.
pub struct AdamW {
    /// Settings.
    pub config: AdamWConfig,
    /// Per-parameter state, in order.
    pub slots: Vec<Slot>,
    /// Steps taken.
    pub step: u64,
}

impl AdamW {
    /// An optimizer over `params` (name, variable, whether it takes weight decay).
    pub fn new(params: Vec<(String, Var, bool)>, config: AdamWConfig) -> Result<Self> {
        let slots = params
            .into_iter()
            .map(|(name, var, decay)| {
                let z = var.as_tensor().zeros_like()?;
                Ok(Slot {
                    name,
                    var,
                    decay,
                    m: z.clone(),
                    v: z,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            config,
            slots,
            step: 0,
        })
    }

    /// One step at learning rate `lr` with the (already clipped) gradients, one per slot in
    /// order; a parameter without a gradient is left as it is, as PyTorch skips it.
    pub fn step(&mut self, grads: &[Option<Tensor>], lr: f64) -> Result<()> {
        self.step += 1;
        let (b1, b2) = self.config.betas;
        let bc1 = 1.0 - b1.powi(self.step as i32);
        let bc2_sqrt = (1.0 - b2.powi(self.step as i32)).sqrt();
        for (s, g) in self.slots.iter_mut().zip(grads) {
            let Some(g) = g else {
                continue;
            };
            let mut p = s.var.as_tensor().clone();
            if s.decay && self.config.weight_decay != 0.0 {
                p = (p * (1.0 - lr * self.config.weight_decay))?;
            }
            s.m = ((&s.m * b1)? + (g * (1.0 - b1))?)?;
            s.v = ((&s.v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let denom = ((s.v.sqrt()? / bc2_sqrt)? + self.config.eps)?;
            let p = (p - ((&s.m / &denom)? * (lr / bc1))?)?;
            s.var.set(&p)?;
        }
        Ok(())
    }
}

/// Scales `grads` so their global L2 norm is at most `max_norm`, as
/// `torch.nn.utils.clip_grad_norm_` does (`max_norm / (norm + 1e-6)`, capped at 1); returns the
/// norm before clipping.
pub fn clip_grad_norm(grads: &mut [Option<Tensor>], max_norm: f64) -> Result<f64> {
    let mut total = 0.0f64;
    for g in grads.iter().flatten() {
        total += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    }
    let norm = total.sqrt();
    let coef = (max_norm / (norm + 1e-6)).min(1.0);
    if coef < 1.0 {
        for g in grads.iter_mut().flatten() {
            *g = (&*g * coef)?;
        }
    }
    Ok(norm)
}

/// The learning-rate factor of `transformers`' `get_cosine_schedule_with_warmup`
/// (`_get_cosine_schedule_with_warmup_lr_lambda`, one half cycle) after `step` scheduler steps:
/// a linear warm-up from 0, then a cosine down to 0. Trainer steps the scheduler after each
/// optimizer step, so the first update uses `factor(0)`.
pub fn cosine_factor(step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return step as f64 / warmup.max(1) as f64;
    }
    let progress = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_warms_up_then_falls_as_a_half_cosine() {
        assert_eq!(cosine_factor(0, 2, 10), 0.0);
        assert_eq!(cosine_factor(1, 2, 10), 0.5);
        assert_eq!(cosine_factor(2, 2, 10), 1.0);
        assert!((cosine_factor(6, 2, 10) - 0.5).abs() < 1e-12);
        assert!(cosine_factor(10, 2, 10).abs() < 1e-12);
        assert_eq!(cosine_factor(0, 0, 4), 1.0);
    }
}
