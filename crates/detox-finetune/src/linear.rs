//! A trainable projection: its weight in the checkpoint's own layout, an optional bias, and an
//! optional LoRA adapter.

use candle_core::{Result, Tensor, Var};

/// How a checkpoint stores a projection's weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `[out, in]` (`nn.Linear`): `y = x Wᵀ`.
    OutIn,
    /// `[in, out]` (GPT-2's `Conv1D`): `y = x W`.
    InOut,
}

/// A LoRA adapter as PEFT's `lora.Linear` computes it: `y += (alpha / r) · x Aᵀ Bᵀ`, with `A`
/// `[r, in]` and `B` `[out, r]` (B starts at zero, so training starts from the base model).
#[derive(Debug)]
pub struct Lora {
    /// `[r, in]`.
    pub a: Var,
    /// `[out, r]`.
    pub b: Var,
    /// `alpha / r`.
    pub scale: f64,
}

/// A parameter as the forward pass uses it: tracked for gradients, or detached when frozen
/// (LoRA training computes no gradient for the base weights, a third of the backward pass).
pub fn tracked(v: &Var, frozen: bool) -> Tensor {
    if frozen {
        v.as_tensor().detach()
    } else {
        v.as_tensor().clone()
    }
}

/// A projection.
#[derive(Debug)]
pub struct Linear {
    /// The weight, in `layout`.
    pub weight: Var,
    /// The bias (`[out]`).
    pub bias: Option<Var>,
    /// The weight's layout.
    pub layout: Layout,
    /// A LoRA adapter, when training one.
    pub lora: Option<Lora>,
    /// Whether the weight and bias are frozen (no gradient is computed for them).
    pub frozen: bool,
}

impl Linear {
    /// A projection without adapter.
    pub fn new(weight: Var, bias: Option<Var>, layout: Layout) -> Self {
        Self {
            weight,
            bias,
            layout,
            lora: None,
            frozen: false,
        }
    }

    /// `(in, out)` sizes.
    pub fn dims(&self) -> Result<(usize, usize)> {
        let (r, c) = self.weight.dims2()?;
        Ok(match self.layout {
            Layout::OutIn => (c, r),
            Layout::InOut => (r, c),
        })
    }

    /// Applies it to `x` `[..., in]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let param = |v: &Var| tracked(v, self.frozen);
        let w = match self.layout {
            Layout::OutIn => param(&self.weight).t()?,
            Layout::InOut => param(&self.weight),
        };
        let mut y = x.broadcast_matmul(&w)?;
        if let Some(b) = &self.bias {
            y = y.broadcast_add(&param(b))?;
        }
        if let Some(l) = &self.lora {
            let low = x.broadcast_matmul(&l.a.as_tensor().t()?)?;
            let up = low.broadcast_matmul(&l.b.as_tensor().t()?)?;
            y = (y + (up * l.scale)?)?;
        }
        Ok(y)
    }

    /// The weight with the adapter merged in, in the checkpoint's layout.
    pub fn merged_weight(&self) -> Result<Tensor> {
        let w = self.weight.as_tensor().clone();
        let Some(l) = &self.lora else { return Ok(w) };
        let delta = (l.b.as_tensor().matmul(l.a.as_tensor())? * l.scale)?;
        match self.layout {
            Layout::OutIn => w + delta,
            Layout::InOut => w + delta.t()?,
        }
    }
}
