//! The building blocks every BERT-family encoder shares: linear layers, layer norm, the
//! post-norm transformer block, and the additive attention mask.

use super::weights::Weights;
use candle_core::{DType, Device, Result, Tensor, D};
use detox_kernels::DenseWeight;

/// A dense layer `y = x W^T + b`.
///
/// On CPU in f32, when detox's kernels are on ([`detox_kernels::isa`]), the weight is held only
/// packed for their matrix product (AVX2 or AVX-512, chosen at run time); otherwise `W^T` is
/// held contiguous so that one candle matrix product serves any batch ([`DenseWeight`]).
#[derive(Debug, Clone)]
pub struct Linear {
    w: DenseWeight,
    b: Option<Tensor>,
    /// The bias as plain floats (zeros when there is none), for the fused CPU epilogues.
    b_vec: Vec<f32>,
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
        let b_vec = bias_vec(b.as_ref(), out_dim)?;
        Ok(Self {
            w: DenseWeight::from_out_in(weight)?,
            b,
            b_vec,
            out_dim,
        })
    }

    /// The same layer with weight and bias multiplied by `s`.
    fn scaled(self, s: f64) -> Result<Self> {
        Ok(Self {
            w: self.w.scaled(s)?,
            b: self.b.map(|b| b * s).transpose()?,
            b_vec: self.b_vec.iter().map(|v| v * s as f32).collect(),
            out_dim: self.out_dim,
        })
    }

    /// Fuses several layers that read the same input into one (e.g. Q, K and V).
    pub fn fuse(parts: &[Linear]) -> Result<Self> {
        let ws = parts
            .iter()
            .map(|p| p.w.transposed())
            .collect::<Result<Vec<_>>>()?;
        let w_t = Tensor::cat(&ws, 1)?.contiguous()?;
        let b = if parts.iter().all(|p| p.b.is_some()) {
            let bs: Vec<&Tensor> = parts.iter().filter_map(|p| p.b.as_ref()).collect();
            Some(Tensor::cat(&bs, 0)?)
        } else {
            None
        };
        let out_dim = parts.iter().map(|p| p.out_dim).sum();
        let b_vec = parts.iter().flat_map(|p| p.b_vec.iter().copied()).collect();
        Ok(Self {
            w: DenseWeight::new(w_t)?,
            b,
            b_vec,
            out_dim,
        })
    }

    /// `x W^T` without the bias: a fresh contiguous tensor the fused epilogues write into.
    pub fn matmul(&self, x: &Tensor) -> Result<Tensor> {
        self.w.matmul(x)
    }

    /// Applies the layer to `[..., in]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.matmul(x)?;
        match &self.b {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// Layer normalisation over the last dimension.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    w_vec: Vec<f32>,
    b_vec: Vec<f32>,
    eps: f32,
}

impl LayerNorm {
    /// Loads `{prefix}.weight` and `{prefix}.bias` of size `dim`.
    pub fn load(w: &Weights, prefix: &str, dim: usize, eps: f64) -> Result<Self> {
        let weight = w.get(&format!("{prefix}.weight"), dim)?;
        let bias = w.get(&format!("{prefix}.bias"), dim)?;
        Ok(Self {
            w_vec: weight.to_vec1::<f32>()?,
            b_vec: bias.to_vec1::<f32>()?,
            weight,
            bias,
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
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" | "gelu_accurate" => {
                Some(Self::GeluTanh)
            }
            "relu" => Some(Self::Relu),
            "silu" | "swish" => Some(Self::Silu),
            _ => None,
        }
    }

    /// Applies the activation.
    pub fn forward(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Act::GeluErf => super::cpu_kernels::gelu_erf(x),
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
    pub fn new(
        q: Linear,
        k: Linear,
        v: Linear,
        out: Linear,
        hidden: usize,
        heads: usize,
    ) -> Result<Self> {
        if heads == 0 || !hidden.is_multiple_of(heads) {
            candle_core::bail!("hidden size {hidden} is not divisible by {heads} attention heads");
        }
        // Fold the 1/sqrt(d) score scale into the query projection: one op less per layer.
        let q = q.scaled(1.0 / ((hidden / heads) as f64).sqrt())?;
        Ok(Self {
            qkv: Linear::fuse(&[q, k, v])?,
            out,
            heads,
            head_dim: hidden / heads,
        })
    }

    /// `x`: [B, L, hidden]; row `b` has `lengths[b]` real tokens (the rest is padding).
    pub fn forward(&self, x: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        self.out.forward(&self.context(x, lengths, false)?)
    }

    /// The attention context [B, L, hidden], before the output projection; with `first_only`,
    /// the first token's context [B, 1, hidden] (every token is still a key and a value).
    pub fn context(&self, x: &Tensor, lengths: &[usize], first_only: bool) -> Result<Tensor> {
        let (b, l, hidden) = x.dims3()?;
        if super::cpu_kernels::fused_attention_applies(x, l) {
            let qkv = self.qkv.matmul(x)?;
            qkv.inplace_op1(&super::cpu_kernels::BiasAct {
                bias: &self.qkv.b_vec,
                gelu: false,
            })?;
            return super::cpu_kernels::fused_attention(
                &qkv,
                lengths,
                self.heads,
                self.head_dim,
                first_only,
            );
        }
        if first_only {
            return self.context(x, lengths, false)?.narrow(1, 0, 1);
        }
        let qkv = self.qkv.forward(x)?;
        let mask = additive_mask(lengths, l, x.device())?;
        let qkv = qkv
            .reshape((b, l, 3, self.heads, self.head_dim))?
            .permute((2, 0, 3, 1, 4))?;
        let q = qkv.get(0)?.contiguous()?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let scores = q.matmul(&k.t()?)?.broadcast_add(&mask)?;
        let probs = super::cpu_kernels::softmax_last_dim(&scores)?;
        probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, l, hidden))
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
    pub fn forward(&self, x: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        if x.device().is_cpu() && x.dtype() == DType::F32 {
            let x = x.contiguous()?;
            let ctx = self.attn.context(&x, lengths, false)?;
            return self.finish_fused(&ctx, &x);
        }
        let a = self.attn.forward(x, lengths)?;
        let x = self.ln1.forward(&(a + x)?)?;
        let h = self.act.forward(&self.ff1.forward(&x)?)?;
        let y = self.ff2.forward(&h)?;
        self.ln2.forward(&(y + x)?)
    }

    /// The block's output for the first token only, [B, 1, hidden]: what a classification
    /// head reads from the last block. Every token is still attended to; the output
    /// projection, norms and feed-forward run on one row per sequence instead of all of them
    /// (in MiniLM-L6 that skips about 12% of the encoder's arithmetic).
    pub fn forward_first(&self, x: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        if x.device().is_cpu() && x.dtype() == DType::F32 {
            let x = x.contiguous()?;
            let ctx = self.attn.context(&x, lengths, true)?;
            return self.finish_fused(&ctx, &x.narrow(1, 0, 1)?.contiguous()?);
        }
        self.forward(x, lengths)?.narrow(1, 0, 1)
    }
}

impl Block {
    /// The CPU path after attention (`ctx`, with the block's input rows `x` for the residual):
    /// matrix products followed by fused in-place epilogues (bias + GELU, bias + residual +
    /// layer norm), so each activation is touched once.
    fn finish_fused(&self, ctx: &Tensor, x: &Tensor) -> Result<Tensor> {
        let y = self.attn.out.matmul(ctx)?;
        y.inplace_op2(
            x,
            &super::cpu_kernels::BiasResidualNorm {
                bias: &self.attn.out.b_vec,
                weight: &self.ln1.w_vec,
                beta: &self.ln1.b_vec,
                eps: self.ln1.eps,
            },
        )?;
        let h = self.ff1.matmul(&y)?;
        let h = if self.act == Act::GeluErf {
            h.inplace_op1(&super::cpu_kernels::BiasAct {
                bias: &self.ff1.b_vec,
                gelu: true,
            })?;
            h
        } else {
            h.inplace_op1(&super::cpu_kernels::BiasAct {
                bias: &self.ff1.b_vec,
                gelu: false,
            })?;
            self.act.forward(&h)?
        };
        let z = self.ff2.matmul(&h)?;
        z.inplace_op2(
            &y,
            &super::cpu_kernels::BiasResidualNorm {
                bias: &self.ff2.b_vec,
                weight: &self.ln2.w_vec,
                beta: &self.ln2.b_vec,
                eps: self.ln2.eps,
            },
        )?;
        Ok(z)
    }
}

fn bias_vec(b: Option<&Tensor>, n: usize) -> Result<Vec<f32>> {
    match b {
        Some(b) => b.to_dtype(DType::F32)?.to_vec1::<f32>(),
        None => Ok(vec![0.0; n]),
    }
}

/// The additive attention mask [B, 1, 1, L]: 0 for the first `lengths[b]` tokens of row `b`,
/// the most negative f32 for padding (as transformers does).
pub fn additive_mask(lengths: &[usize], l: usize, device: &Device) -> Result<Tensor> {
    let b = lengths.len();
    let bias: Vec<f32> = lengths
        .iter()
        .flat_map(|&n| (0..l).map(move |i| if i < n { 0.0 } else { f32::MIN }))
        .collect();
    Tensor::from_vec(bias, (b, 1, 1, l), device)
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
