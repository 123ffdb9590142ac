//! The building blocks every BERT-family encoder shares: linear layers, layer norm, the
//! post-norm transformer block, and the additive attention mask.

use super::weights::Weights;
use candle_core::{DType, Device, Result, Tensor, D};

/// A dense layer `y = x W^T + b`, with `W^T` stored contiguous so one GEMM serves any batch.
#[derive(Debug, Clone)]
pub struct Linear {
    w_t: Tensor,
    b: Option<Tensor>,
    out_dim: usize,
}

impl Linear {
    /// Loads `{prefix}.weight` ([out, in]) and `{prefix}.bias` ([out]).
    pub fn load(w: &Weights, prefix: &str, in_dim: usize, out_dim: usize) -> Result<Self> {
        let weight = w.get(&format!("{prefix}.weight"), (out_dim, in_dim))?;
        let bias = w.get(&format!("{prefix}.bias"), out_dim)?;
        Self::from_parts(&weight, Some(bias))
    }

    /// Builds a layer from a weight of shape [out, in] and an optional bias.
    pub fn from_parts(weight: &Tensor, b: Option<Tensor>) -> Result<Self> {
        let out_dim = weight.dim(0)?;
        Ok(Self {
            w_t: weight.t()?.contiguous()?,
            b,
            out_dim,
        })
    }

    /// Fuses several layers that read the same input into one (e.g. Q, K and V).
    pub fn fuse(parts: &[Linear]) -> Result<Self> {
        let ws: Vec<&Tensor> = parts.iter().map(|p| &p.w_t).collect();
        let w_t = Tensor::cat(&ws, 1)?.contiguous()?;
        let b = if parts.iter().all(|p| p.b.is_some()) {
            let bs: Vec<&Tensor> = parts.iter().filter_map(|p| p.b.as_ref()).collect();
            Some(Tensor::cat(&bs, 0)?)
        } else {
            None
        };
        let out_dim = parts.iter().map(|p| p.out_dim).sum();
        Ok(Self { w_t, b, out_dim })
    }

    /// Applies the layer to `[..., in]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let in_dim = *dims.last().unwrap_or(&0);
        let rows = x.elem_count() / in_dim.max(1);
        let y = x.reshape((rows, in_dim))?.matmul(&self.w_t)?;
        let y = match &self.b {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out = dims;
        if let Some(last) = out.last_mut() {
            *last = self.out_dim;
        }
        y.reshape(out)
    }
}

/// Layer normalisation over the last dimension.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    /// Loads `{prefix}.weight` and `{prefix}.bias` of size `dim`.
    pub fn load(w: &Weights, prefix: &str, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: w.get(&format!("{prefix}.weight"), dim)?,
            bias: w.get(&format!("{prefix}.bias"), dim)?,
            eps: eps as f32,
        })
    }

    /// Normalises `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::layer_norm(&x.contiguous()?, &self.weight, &self.bias, self.eps)
    }
}

/// The feed-forward activation named by a config's `hidden_act` / `activation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// Exact GELU (`gelu`): `x * Phi(x)` with the error function.
    GeluErf,
    /// The tanh approximation (`gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`).
    GeluTanh,
    /// `relu`.
    Relu,
    /// `silu` / `swish`.
    Silu,
}

impl Act {
    /// Parses a transformers activation name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "gelu" | "gelu_python" => Some(Self::GeluErf),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" | "gelu_accurate" => Some(Self::GeluTanh),
            "relu" => Some(Self::Relu),
            "silu" | "swish" => Some(Self::Silu),
            _ => None,
        }
    }

    /// Applies the activation.
    pub fn forward(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Act::GeluErf => super::fast::gelu_erf(x),
            Act::GeluTanh => x.gelu(),
            Act::Relu => x.relu(),
            Act::Silu => x.silu(),
        }
    }
}

/// Multi-head self-attention with fused Q/K/V projections.
#[derive(Debug, Clone)]
pub struct SelfAttention {
    qkv: Linear,
    out: Linear,
    heads: usize,
    head_dim: usize,
}

impl SelfAttention {
    /// Builds attention from separate Q, K, V and output projections.
    pub fn new(q: Linear, k: Linear, v: Linear, out: Linear, hidden: usize, heads: usize) -> Result<Self> {
        if heads == 0 || hidden % heads != 0 {
            candle_core::bail!("hidden size {hidden} is not divisible by {heads} attention heads");
        }
        Ok(Self {
            qkv: Linear::fuse(&[q, k, v])?,
            out,
            heads,
            head_dim: hidden / heads,
        })
    }

    /// `x`: [B, L, hidden]; `mask`: additive [B, 1, 1, L] (0 for tokens, large negative for pads).
    pub fn forward(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, l, hidden) = x.dims3()?;
        let qkv = self
            .qkv
            .forward(x)?
            .reshape((b, l, 3, self.heads, self.head_dim))?
            .permute((2, 0, 3, 1, 4))?;
        let q = qkv.get(0)?.contiguous()?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(mask)?;
        let probs = super::fast::softmax_last_dim(&scores)?;
        let ctx = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, l, hidden))?;
        self.out.forward(&ctx)
    }
}

/// One post-norm transformer block, as in BERT, RoBERTa and DistilBERT:
/// `x = LN(x + attn(x)); x = LN(x + W2 act(W1 x))`.
#[derive(Debug, Clone)]
pub struct Block {
    /// Self-attention.
    pub attn: SelfAttention,
    /// Norm after attention.
    pub ln1: LayerNorm,
    /// First feed-forward projection.
    pub ff1: Linear,
    /// Second feed-forward projection.
    pub ff2: Linear,
    /// Norm after the feed-forward.
    pub ln2: LayerNorm,
    /// The feed-forward activation.
    pub act: Act,
}

impl Block {
    /// Runs the block.
    pub fn forward(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let a = self.attn.forward(x, mask)?;
        let x = self.ln1.forward(&(a + x)?)?;
        let h = self.act.forward(&self.ff1.forward(&x)?)?;
        let y = self.ff2.forward(&h)?;
        self.ln2.forward(&(y + x)?)
    }
}

/// The additive attention mask [B, 1, 1, L] from a 0/1 mask [B, L].
pub fn additive_mask(mask: &Tensor) -> Result<Tensor> {
    let (b, l) = mask.dims2()?;
    let m = mask.to_dtype(DType::F32)?;
    // (1 - m) * min: pads get a huge negative bias, tokens get 0 (as transformers does).
    let neg = ((m.ones_like()? - &m)? * (f32::MIN as f64))?;
    neg.reshape((b, 1, 1, l))
}

/// Picks the first token's hidden state: [B, L, H] -> [B, H].
pub fn first_token(x: &Tensor) -> Result<Tensor> {
    x.narrow(1, 0, 1)?.squeeze(1)?.contiguous()
}

/// Mean over the tokens where `mask` is 1: [B, L, H] -> [B, H].
pub fn masked_mean(x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let m = mask.to_dtype(DType::F32)?.unsqueeze(D::Minus1)?;
    let sum = x.broadcast_mul(&m)?.sum(1)?;
    let count = m.sum(1)?.clamp(1e-9, f64::INFINITY)?;
    sum.broadcast_div(&count)
}

/// A [B, L] u32 tensor from padded rows.
pub fn ids_tensor(rows: &[Vec<u32>], device: &Device) -> Result<Tensor> {
    let b = rows.len();
    let l = rows.first().map(|r| r.len()).unwrap_or(0);
    let flat: Vec<u32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_vec(flat, (b, l), device)
}
