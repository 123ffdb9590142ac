//! Dense f32 projections for decoding on CPU.
//!
//! The weight is a [`DenseWeight`]: packed once for detox's CPU matrix kernels (AVX2 or
//! AVX-512, chosen at run time), so the few rows of batched decoding (k samples) pay for
//! arithmetic only; where those kernels do not run, candle's product reads `W^T` in place.

use candle_core::{Result, Tensor};
use detox_kernels::DenseWeight;

/// A dense layer.
pub struct Dense {
    w: DenseWeight,
    bias: Option<Tensor>,
}

impl Dense {
    /// From a weight laid out `[out, in]` (PyTorch `Linear`, GGUF).
    pub fn from_out_in(w: &Tensor, bias: Option<Tensor>) -> Result<Self> {
        Ok(Self {
            w: DenseWeight::from_out_in(w)?,
            bias,
        })
    }

    /// From a weight laid out `[in, out]` (GPT-2's `Conv1D`).
    pub fn from_in_out(w: Tensor, bias: Option<Tensor>) -> Result<Self> {
        Ok(Self {
            w: DenseWeight::new(w)?,
            bias,
        })
    }

    /// Output features.
    pub fn out_features(&self) -> Result<usize> {
        self.w.out_features()
    }

    /// Applies the layer to the last dimension of `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.w.matmul(x)?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}
