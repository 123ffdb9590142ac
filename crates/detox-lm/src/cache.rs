//! The key/value cache shared by the model files: per layer, keys and values of the tokens
//! seen so far, [B, kv_heads, T, head_dim]. The caller owns it, so a prompt is prefilled once
//! and its cache repeated for the k samples.

use candle_core::{Result, Tensor};

/// The keys and values of the tokens seen so far, per layer.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl KvCache {
    /// An empty cache for `layers` blocks.
    pub fn new(layers: usize) -> Self {
        Self {
            layers: vec![None; layers],
            len: 0,
        }
    }

    /// Tokens cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// This single-row cache repeated `n` times (the k samples of one prompt).
    pub fn repeat(&self, n: usize) -> Result<Self> {
        let layers = self
            .layers
            .iter()
            .map(|l| {
                l.as_ref()
                    .map(|(k, v)| -> Result<(Tensor, Tensor)> {
                        Ok((k.repeat((n, 1, 1, 1))?, v.repeat((n, 1, 1, 1))?))
                    })
                    .transpose()
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            layers,
            len: self.len,
        })
    }

    /// Appends a block's new keys and values ([B, kv_heads, L, head_dim]) and returns all of
    /// them, cached ones first.
    pub fn append(&mut self, layer: usize, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        let slot = self
            .layers
            .get_mut(layer)
            .ok_or_else(|| candle_core::Error::Msg(format!("no cache slot for block {layer}")))?;
        let (k, v) = match slot.take() {
            Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
            None => (k, v),
        };
        *slot = Some((k.clone(), v.clone()));
        Ok((k, v))
    }

    /// Records that `n` more tokens were appended to every block.
    pub fn advance(&mut self, n: usize) {
        self.len += n;
    }
}

/// The additive causal mask for `l` new rows after `pos` cached tokens: [1, 1, l, pos + l],
/// or `None` for a single row (it may see everything).
pub fn causal_mask(pos: usize, l: usize, device: &candle_core::Device) -> Result<Option<Tensor>> {
    if l <= 1 {
        return Ok(None);
    }
    let m: Vec<f32> = (0..l)
        .flat_map(|i| (0..pos + l).map(move |j| if j <= pos + i { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    Ok(Some(Tensor::from_vec(m, (1, 1, l, pos + l), device)?))
}

/// Scaled dot-product attention of `q` [B, H, L, D] over `k`, `v` [B, H, T, D] with an
/// optional additive mask: the context [B, H, L, D].
pub fn attend(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let d = q.dim(3)?;
    let mut scores = (q.matmul(&k.t()?)? / (d as f64).sqrt())?;
    if let Some(m) = mask {
        scores = scores.broadcast_add(m)?;
    }
    candle_nn::ops::softmax_last_dim(&scores)?.matmul(&v.contiguous()?)
}

/// Fails when `tokens` exceed a model's context.
pub fn check_context(tokens: usize, context: usize) -> Result<()> {
    if tokens > context {
        candle_core::bail!("{tokens} tokens exceed the model's context of {context}");
    }
    Ok(())
}
