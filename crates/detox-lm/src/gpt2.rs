//! GPT-2 from a Hugging Face folder (`config.json` + `model.safetensors`): the model every
//! RealToxicityPrompts baseline used. Candle has no GPT-2, so this is detox's own, checked
//! against PyTorch `transformers` on a tiny random GPT-2 (`tests/gpt2.rs`).
//!
//! Hugging Face stores GPT-2's projections as `Conv1D` (weight `[in, out]`); they are
//! transposed once on load. The output layer is the token embedding (tied).

use crate::cache::{attend, causal_mask, check_context, KvCache};
use crate::dense::Dense;
use crate::{CausalLm, LmError};
use candle_core::{Device, Result, Tensor};
use std::path::Path;

/// Shapes and constants from `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Gpt2Config {
    /// Transformer blocks (`n_layer`).
    pub layers: usize,
    /// Attention heads (`n_head`).
    pub heads: usize,
    /// Hidden size (`n_embd`).
    pub hidden: usize,
    /// Longest context (`n_positions`).
    pub context: usize,
    /// Layer-norm epsilon.
    pub eps: f64,
    /// Vocabulary size.
    pub vocab: usize,
    /// `gelu_new` (tanh approximation, GPT-2's) or exact `gelu`.
    pub tanh_gelu: bool,
    /// Beginning-of-sequence id (`bos_token_id`, GPT-2: `<|endoftext|>`).
    pub bos: Option<u32>,
    /// End-of-sequence id.
    pub eos: Option<u32>,
}

struct Norm {
    weight: Tensor,
    bias: Tensor,
}

impl Norm {
    fn forward(&self, x: &Tensor, eps: f64) -> Result<Tensor> {
        candle_nn::ops::layer_norm(&x.contiguous()?, &self.weight, &self.bias, eps as f32)
    }
}

struct Block {
    ln_1: Norm,
    c_attn: Dense,
    c_proj: Dense,
    ln_2: Norm,
    c_fc: Dense,
    mlp_proj: Dense,
}

/// A loaded GPT-2.
pub struct Gpt2 {
    /// Its configuration.
    pub config: Gpt2Config,
    wte: Tensor,
    wpe: Tensor,
    blocks: Vec<Block>,
    ln_f: Norm,
    /// The output layer: the token embedding (tied), held for the fast product.
    lm_head: Dense,
    device: Device,
}

impl Gpt2Config {
    /// Reads a Hugging Face GPT-2 folder's `config.json`.
    pub fn read(dir: &Path) -> std::result::Result<Self, LmError> {
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| LmError::file(&cfg_path, e))?;
        let c: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| LmError::file(&cfg_path, e))?;
        let model_type = c["model_type"].as_str().unwrap_or("");
        if model_type != "gpt2" {
            return Err(LmError::file(
                &cfg_path,
                format!("model_type `{model_type}` is not gpt2"),
            ));
        }
        let num = |k: &str| -> std::result::Result<usize, LmError> {
            c[k].as_u64()
                .map(|v| v as usize)
                .ok_or_else(|| LmError::file(&cfg_path, format!("`{k}` missing or not a number")))
        };
        let act = c["activation_function"].as_str().unwrap_or("gelu_new");
        let tanh_gelu = match act {
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => true,
            "gelu" => false,
            other => {
                return Err(LmError::Unsupported(format!(
                    "{}: activation_function `{other}` is not supported",
                    cfg_path.display()
                )))
            }
        };
        let config = Self {
            layers: num("n_layer")?,
            heads: num("n_head")?,
            hidden: num("n_embd")?,
            context: num("n_positions")?,
            eps: c["layer_norm_epsilon"].as_f64().unwrap_or(1e-5),
            vocab: num("vocab_size")?,
            tanh_gelu,
            bos: c["bos_token_id"].as_u64().map(|v| v as u32),
            eos: c["eos_token_id"].as_u64().map(|v| v as u32),
        };
        if !config.hidden.is_multiple_of(config.heads) {
            return Err(LmError::file(
                &cfg_path,
                "n_embd is not a multiple of n_head",
            ));
        }
        Ok(config)
    }
}

impl Gpt2 {
    /// Loads a Hugging Face GPT-2 folder.
    pub fn load(dir: &Path, device: &Device) -> std::result::Result<Self, LmError> {
        let config = Gpt2Config::read(dir)?;
        let mut w = crate::load::read_weights(dir, device)?;
        // Checkpoints saved by `GPT2LMHeadModel` prefix names with `transformer.`; the
        // original ones do not.
        let prefix = if w.contains_key("transformer.wte.weight") {
            "transformer."
        } else {
            ""
        };
        let mut take = |name: &str| -> std::result::Result<Tensor, LmError> {
            w.remove(&format!("{prefix}{name}"))
                .ok_or_else(|| LmError::file(dir, format!("no tensor `{prefix}{name}`")))
        };
        let wte = take("wte.weight")?;
        let wpe = take("wpe.weight")?;
        let (vocab, hidden) = wte.dims2()?;
        if hidden != config.hidden || vocab != config.vocab {
            return Err(LmError::file(
                dir,
                format!(
                    "wte is [{vocab}, {hidden}], config says [{}, {}]",
                    config.vocab, config.hidden
                ),
            ));
        }
        let mut blocks = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let mut t = |n: &str| take(&format!("h.{i}.{n}"));
            // Conv1D: y = x W + b with W [in, out].
            let mut conv = |n: &str| -> std::result::Result<Dense, LmError> {
                let weight = t(&format!("{n}.weight"))?;
                let bias = t(&format!("{n}.bias"))?;
                Ok(Dense::from_in_out(weight, Some(bias))?)
            };
            let c_attn = conv("attn.c_attn")?;
            let c_proj = conv("attn.c_proj")?;
            let c_fc = conv("mlp.c_fc")?;
            let mlp_proj = conv("mlp.c_proj")?;
            let mut ln = |n: &str| -> std::result::Result<Norm, LmError> {
                Ok(Norm {
                    weight: t(&format!("{n}.weight"))?,
                    bias: t(&format!("{n}.bias"))?,
                })
            };
            let ln_1 = ln("ln_1")?;
            let ln_2 = ln("ln_2")?;
            blocks.push(Block {
                ln_1,
                c_attn,
                c_proj,
                ln_2,
                c_fc,
                mlp_proj,
            });
        }
        let ln_f = Norm {
            weight: take("ln_f.weight")?,
            bias: take("ln_f.bias")?,
        };
        let lm_head = Dense::from_out_in(&wte, None)?;
        Ok(Self {
            config,
            lm_head,
            wte,
            wpe,
            blocks,
            ln_f,
            device: device.clone(),
        })
    }
}

impl CausalLm for Gpt2 {
    fn device(&self) -> &Device {
        &self.device
    }

    fn new_cache(&self) -> KvCache {
        KvCache::new(self.config.layers)
    }

    fn context(&self) -> usize {
        self.config.context
    }

    fn forward(&self, ids: &Tensor, cache: &mut KvCache, all: bool) -> Result<Tensor> {
        let (b, l) = ids.dims2()?;
        let pos = cache.len();
        check_context(pos + l, self.config.context)?;
        let (hd, h) = (self.config.hidden, self.config.heads);
        let d = hd / h;
        let tok = self
            .wte
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, l, hd))?;
        let positions = self.wpe.narrow(0, pos, l)?;
        let mut x = tok.broadcast_add(&positions)?;
        let mask = causal_mask(pos, l, &self.device)?;
        for (i, blk) in self.blocks.iter().enumerate() {
            let a = blk.ln_1.forward(&x, self.config.eps)?;
            let qkv = blk.c_attn.forward(&a)?.reshape((b, l, 3, h, d))?;
            let part = |j: usize| -> Result<Tensor> {
                qkv.narrow(2, j, 1)?
                    .squeeze(2)?
                    .transpose(1, 2)?
                    .contiguous()
            };
            let (q, k, v) = (part(0)?, part(1)?, part(2)?);
            let (k, v) = cache.append(i, k, v)?;
            let ctx = attend(&q, &k, &v, mask.as_ref())?
                .transpose(1, 2)?
                .reshape((b, l, hd))?;
            x = (x + blk.c_proj.forward(&ctx)?)?;
            let m = blk.ln_2.forward(&x, self.config.eps)?;
            let f = blk.c_fc.forward(&m)?;
            let f = if self.config.tanh_gelu {
                f.gelu()?
            } else {
                f.gelu_erf()?
            };
            x = (x + blk.mlp_proj.forward(&f)?)?;
        }
        cache.advance(l);
        let x = if all {
            x
        } else {
            x.narrow(1, l - 1, 1)?.squeeze(1)?
        };
        let x = self.ln_f.forward(&x, self.config.eps)?;
        self.lm_head.forward(&x)
    }
}
