//! Fine-tuning the top blocks of a BERT-family encoder together with a trained head, with
//! candle's autograd.
//!
//! The frozen lower blocks run with the scorer's fast inference kernels (they have no backward
//! pass); the top `layers` blocks are rebuilt here from differentiable candle operations (the
//! post-norm BERT block: self-attention, residual, layer norm, GELU feed-forward, residual,
//! layer norm), followed by the pooling and the head. The encoder's blocks learn at a small
//! learning rate, the head at its own. The tuned blocks are returned under their checkpoint
//! names, so a head folder can carry them and [`detox_scorers::HeadScorer`] can load them over
//! the pulled encoder.

use crate::fit::Rng;
use crate::TrainError;
use candle_core::{Device, Tensor, Var, D};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use detox_scorers::models::Weights;
use detox_scorers::SentenceEncoder;
use std::collections::HashMap;
use std::path::Path;

/// Fine-tuning settings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TuneConfig {
    /// Top encoder blocks to tune (0: none).
    pub layers: usize,
    /// Passes over the training data.
    pub epochs: usize,
    /// Learning rate of the encoder blocks.
    pub lr: f64,
    /// Learning rate of the head.
    pub head_lr: f64,
    /// Examples per step.
    pub batch_size: usize,
    /// Seed of the shuffling.
    pub seed: u64,
    /// Threads for the matrix products (0: all cores).
    #[serde(skip)]
    pub threads: usize,
}

impl Default for TuneConfig {
    fn default() -> Self {
        Self {
            layers: 0,
            epochs: 2,
            lr: 2e-5,
            head_lr: 1e-4,
            batch_size: 32,
            seed: 17,
            threads: 0,
        }
    }
}

/// The parameters of one block, by their names in the checkpoint.
struct BlockVars {
    names: Vec<String>,
    vars: HashMap<String, Var>,
}

const PARTS: [&str; 16] = [
    "attention.self.query.weight",
    "attention.self.query.bias",
    "attention.self.key.weight",
    "attention.self.key.bias",
    "attention.self.value.weight",
    "attention.self.value.bias",
    "attention.output.dense.weight",
    "attention.output.dense.bias",
    "attention.output.LayerNorm.weight",
    "attention.output.LayerNorm.bias",
    "intermediate.dense.weight",
    "intermediate.dense.bias",
    "output.dense.weight",
    "output.dense.bias",
    "output.LayerNorm.weight",
    "output.LayerNorm.bias",
];

impl BlockVars {
    fn load(weights: &Weights, layer: usize) -> Result<Self, TrainError> {
        let probe = format!("encoder.layer.{layer}.{}", PARTS[0]);
        let full = weights
            .names()
            .find(|k| k.ends_with(&probe))
            .ok_or_else(|| {
                TrainError::Data(format!(
                    "the encoder has no `{probe}`: fine-tuning supports BERT-layout encoders"
                ))
            })?
            .clone();
        let prefix = &full[..full.len() - PARTS[0].len()];
        let mut vars = HashMap::new();
        let mut names = Vec::new();
        for part in PARTS {
            // `Weights` already renamed old checkpoints' gamma/beta and converted to f32.
            let name = format!("{prefix}{part}");
            vars.insert(
                part.to_string(),
                Var::from_tensor(&weights.get_any(&name)?)?,
            );
            names.push(name);
        }
        Ok(Self { names, vars })
    }

    fn v(&self, part: &str) -> &Tensor {
        self.vars[part].as_tensor()
    }

    fn linear(&self, x: &Tensor, name: &str) -> candle_core::Result<Tensor> {
        let w = self.v(&format!("{name}.weight"));
        let b = self.v(&format!("{name}.bias"));
        x.broadcast_matmul(&w.t()?)?.broadcast_add(b)
    }

    fn norm(&self, x: &Tensor, name: &str, eps: f64) -> candle_core::Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let y = xc.broadcast_div(&(var + eps)?.sqrt()?)?;
        y.broadcast_mul(self.v(&format!("{name}.weight")))?
            .broadcast_add(self.v(&format!("{name}.bias")))
    }

    /// The post-norm BERT block; `mask` is additive, [B, 1, 1, L].
    fn forward(
        &self,
        x: &Tensor,
        mask: &Tensor,
        heads: usize,
        eps: f64,
        tanh_gelu: bool,
    ) -> candle_core::Result<Tensor> {
        let (b, l, h) = x.dims3()?;
        let d = h / heads;
        let split = |z: Tensor| -> candle_core::Result<Tensor> {
            z.reshape((b, l, heads, d))?.transpose(1, 2)?.contiguous()
        };
        let q = split(self.linear(x, "attention.self.query")?)?;
        let k = split(self.linear(x, "attention.self.key")?)?;
        let v = split(self.linear(x, "attention.self.value")?)?;
        let scores =
            (q.matmul(&k.t()?.contiguous()?)? * (1.0 / (d as f64).sqrt()))?.broadcast_add(mask)?;
        // Softmax from differentiable parts (the max is a constant shift).
        let m = scores.max_keepdim(D::Minus1)?.detach();
        let e = scores.broadcast_sub(&m)?.exp()?;
        let p = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?;
        let ctx = p.matmul(&v)?.transpose(1, 2)?.reshape((b, l, h))?;
        let a = self.linear(&ctx, "attention.output.dense")?;
        let x1 = self.norm(&(x + a)?, "attention.output.LayerNorm", eps)?;
        let f = self.linear(&x1, "intermediate.dense")?;
        let f = if tanh_gelu { f.gelu()? } else { f.gelu_erf()? };
        let f = self.linear(&f, "output.dense")?;
        self.norm(&(x1 + f)?, "output.LayerNorm", eps)
    }
}

/// Sets candle's kernel threads (`RAYON_NUM_THREADS`) and restores them when dropped.
struct ThreadsGuard(Option<String>);

impl ThreadsGuard {
    fn set(n: usize) -> Self {
        let previous = std::env::var("RAYON_NUM_THREADS").ok();
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        Self(previous)
    }
}

impl Drop for ThreadsGuard {
    fn drop(&mut self) {
        match &self.0 {
            Some(v) => std::env::set_var("RAYON_NUM_THREADS", v),
            None => std::env::remove_var("RAYON_NUM_THREADS"),
        }
    }
}

/// The encoder checkpoint's tensors (safetensors or PyTorch pickle), as the scorers read them.
fn encoder_weights(encoder_dir: &Path) -> Result<Weights, TrainError> {
    let file = detox_scorers::classifier::weights_file(encoder_dir)?;
    Ok(Weights::load(&file, None, &Device::Cpu)?)
}

/// Attention heads, layer-norm epsilon and whether GELU is the tanh kind, from `config.json`.
fn block_config(encoder_dir: &Path) -> Result<(usize, f64, bool), TrainError> {
    let path = encoder_dir.join("config.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| TrainError::Io(path.display().to_string(), e))?;
    let config: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| TrainError::Data(format!("{}: {e}", path.display())))?;
    let heads = config["num_attention_heads"]
        .as_u64()
        .ok_or_else(|| TrainError::Data(format!("{}: no num_attention_heads", path.display())))?
        as usize;
    let eps = config["layer_norm_eps"].as_f64().unwrap_or(1e-12);
    let tanh_gelu = matches!(
        config["hidden_act"].as_str(),
        Some("gelu_new" | "gelu_pytorch_tanh" | "gelu_fast")
    );
    Ok((heads, eps, tanh_gelu))
}

/// The additive attention mask of right-padded rows: [B, 1, 1, L], 0 on tokens, -10^4 on pads.
fn padding_mask(lengths: &[usize], b: usize, l: usize) -> Result<Tensor, TrainError> {
    let mask: Vec<f32> = lengths
        .iter()
        .flat_map(|&len| (0..l).map(move |j| if j < len { 0.0 } else { -1e4 }))
        .collect();
    Ok(Tensor::from_vec(mask, (b, 1, 1, l), &Device::Cpu)?)
}

/// What fine-tuning produced.
pub struct Tuned {
    /// The head's tensors (`w1`, `b1`, and `w2`, `b2` with a hidden layer), all targets.
    pub head: HashMap<String, Tensor>,
    /// The tuned blocks' tensors under their checkpoint names.
    pub layers: Vec<(String, Tensor)>,
    /// Mean training loss of the last epoch.
    pub final_loss: f64,
}

/// Fine-tunes the top `cfg.layers` blocks of `encoder` (loaded from `encoder_dir`) with the
/// head `head` (as `fit` returns it: raw pooled embeddings in, logits of every target out) on
/// `texts` with targets `y` and weights `w` (mean pooling only). `progress(epoch, step, loss)`.
#[allow(clippy::too_many_arguments)]
pub fn fine_tune(
    encoder: &SentenceEncoder,
    encoder_dir: &Path,
    texts: &[&str],
    y: &[Vec<Option<f32>>],
    w: &[Vec<f32>],
    head: &HashMap<String, Tensor>,
    cfg: &TuneConfig,
    progress: &mut dyn FnMut(usize, usize, usize, f64),
) -> Result<Tuned, TrainError> {
    let n = texts.len();
    if n == 0 || y.len() != n || w.len() != n {
        return Err(TrainError::Data(
            "no training examples to fine-tune on".into(),
        ));
    }
    let total = encoder.num_layers();
    if cfg.layers == 0 || cfg.layers > total {
        return Err(TrainError::Data(format!(
            "--fine-tune-layers must be between 1 and the encoder's {total} blocks"
        )));
    }
    let (heads, eps, tanh_gelu) = block_config(encoder_dir)?;
    let weights = encoder_weights(encoder_dir)?;
    let blocks: Vec<BlockVars> = (total - cfg.layers..total)
        .map(|i| BlockVars::load(&weights, i))
        .collect::<Result<_, _>>()?;

    let var = |name: &str| -> Result<Var, TrainError> {
        let t = head
            .get(name)
            .ok_or_else(|| TrainError::Data(format!("the head has no `{name}`")))?;
        Ok(Var::from_tensor(t)?)
    };
    let (w1, b1) = (var("w1")?, var("b1")?);
    let second = match (head.get("w2"), head.get("b2")) {
        (Some(_), Some(_)) => Some((var("w2")?, var("b2")?)),
        _ => None,
    };
    let mut head_vars = vec![w1.clone(), b1.clone()];
    if let Some((a, b)) = &second {
        head_vars.push(a.clone());
        head_vars.push(b.clone());
    }
    let enc_vars: Vec<Var> = blocks
        .iter()
        .flat_map(|b| PARTS.iter().map(|p| b.vars[*p].clone()))
        .collect();
    let mut opt_enc = AdamW::new(
        enc_vars,
        ParamsAdamW {
            lr: cfg.lr,
            weight_decay: 0.01,
            ..Default::default()
        },
    )?;
    let mut opt_head = AdamW::new(
        head_vars,
        ParamsAdamW {
            lr: cfg.head_lr,
            weight_decay: 1e-4,
            ..Default::default()
        },
    )?;

    // One step at a time: the matrix kernels get the cores (the CLI sets them to one thread
    // each for scoring many batches side by side); the guard restores the setting.
    let threads = if cfg.threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        cfg.threads
    };
    let _threads = ThreadsGuard::set(threads);
    let k = y[0].len();
    let mut rng = Rng::new(cfg.seed);
    let mut order: Vec<usize> = (0..n).collect();
    let bs = cfg.batch_size.max(1);
    let steps = n.div_ceil(bs);
    let mut last = 0.0;
    for epoch in 0..cfg.epochs {
        rng.shuffle(&mut order);
        // Similar lengths share a batch (less padding): sort within windows of 50 batches.
        for window in order.chunks_mut(bs * 50) {
            window.sort_by_key(|&i| texts[i].len());
        }
        let mut batches: Vec<&[usize]> = order.chunks(bs).collect();
        rng.shuffle(&mut batches);
        let (mut sum, mut count) = (0.0, 0usize);
        for (step, batch) in batches.iter().enumerate() {
            let bt: Vec<&str> = batch.iter().map(|&i| texts[i]).collect();
            let (x, lengths) = encoder.lower_states(&bt, cfg.layers)?;
            let (b, l, _) = x.dims3()?;
            let additive = padding_mask(&lengths, b, l)?;
            let mut hdn = x;
            for blk in &blocks {
                hdn = blk.forward(&hdn, &additive, heads, eps, tanh_gelu)?;
            }
            let keep: Vec<f32> = lengths
                .iter()
                .flat_map(|&len| (0..l).map(move |j| f32::from(u8::from(j < len))))
                .collect();
            let keep = Tensor::from_vec(keep, (b, l, 1), &Device::Cpu)?;
            let lens = Tensor::from_vec(
                lengths.iter().map(|&v| v.max(1) as f32).collect::<Vec<_>>(),
                (b, 1),
                &Device::Cpu,
            )?;
            let pooled = hdn.broadcast_mul(&keep)?.sum(1)?.broadcast_div(&lens)?;
            let h1 = pooled
                .matmul(&w1.as_tensor().t()?)?
                .broadcast_add(b1.as_tensor())?;
            let z = match &second {
                None => h1,
                Some((w2, b2)) => h1
                    .relu()?
                    .matmul(&w2.as_tensor().t()?)?
                    .broadcast_add(b2.as_tensor())?,
            };
            let yb: Vec<f32> = batch
                .iter()
                .flat_map(|&i| y[i].iter().map(|t| t.unwrap_or(0.0)))
                .collect();
            let mb: Vec<f32> = batch
                .iter()
                .flat_map(|&i| {
                    y[i].iter()
                        .zip(&w[i])
                        .map(|(t, wt)| if t.is_some() { *wt } else { 0.0 })
                })
                .collect();
            let yb = Tensor::from_vec(yb, (b, k), &Device::Cpu)?;
            let mb = Tensor::from_vec(mb, (b, k), &Device::Cpu)?;
            let denom = mb.sum_all()?.to_scalar::<f32>()?;
            if denom <= 0.0 {
                continue;
            }
            // Binary cross-entropy with logits: max(z,0) - z*y + log(1 + e^-|z|).
            let bce = ((z.relu()? - (&z * &yb)?)? + (z.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
            let loss = ((bce * &mb)?.sum_all()? / denom as f64)?;
            let grads = loss.backward()?;
            opt_enc.step(&grads)?;
            opt_head.step(&grads)?;
            sum += loss.to_scalar::<f32>()? as f64;
            count += 1;
            progress(epoch + 1, step + 1, steps, sum / count as f64);
        }
        last = sum / count.max(1) as f64;
    }
    let mut head_out = HashMap::new();
    head_out.insert("w1".to_string(), w1.as_tensor().clone());
    head_out.insert("b1".to_string(), b1.as_tensor().clone());
    if let Some((a, b)) = second {
        head_out.insert("w2".to_string(), a.as_tensor().clone());
        head_out.insert("b2".to_string(), b.as_tensor().clone());
    }
    let mut layers = Vec::new();
    for blk in &blocks {
        for (part, name) in PARTS.iter().zip(&blk.names) {
            layers.push((name.clone(), blk.vars[*part].as_tensor().clone()));
        }
    }
    Ok(Tuned {
        head: head_out,
        layers,
        final_loss: last,
    })
}

/// The differentiable block against the inference kernels: used by the tests.
#[doc(hidden)]
pub fn top_blocks_forward(
    encoder: &SentenceEncoder,
    encoder_dir: &Path,
    texts: &[&str],
    layers: usize,
) -> Result<(Tensor, Vec<usize>), TrainError> {
    let (heads, eps, tanh_gelu) = block_config(encoder_dir)?;
    let weights = encoder_weights(encoder_dir)?;
    let total = encoder.num_layers();
    let (x, lengths) = encoder.lower_states(texts, layers)?;
    let (b, l, _) = x.dims3()?;
    let additive = padding_mask(&lengths, b, l)?;
    let mut h = x;
    for i in total - layers..total {
        h = BlockVars::load(&weights, i)?.forward(&h, &additive, heads, eps, tanh_gelu)?;
    }
    Ok((h, lengths))
}
