//! Llama-family models from GGUF files (architectures `llama`: SmolLM2, Llama, Mistral layouts;
//! `qwen2`: biases on Q/K/V; `qwen3`: per-head RMS norms on Q and K), with a KV cache the
//! caller owns: a prompt is prefilled once, its cache repeated for the k samples, and the
//! samples decoded in lockstep as one batch (RealToxicityPrompts draws 25 per prompt).
//!
//! Weights keep their GGUF quantization (candle's `QMatMul`) or are dequantized to f32; the
//! token embedding is dequantized once. Rotary embeddings: the interleaved kind for `llama`
//! (llama.cpp's converter permutes its Q/K rows), the rotate-half (NEOX) kind for Qwen.

use crate::cache::{attend, causal_mask, check_context, KvCache};
use crate::dense::Dense;
use crate::{CausalLm, LmError};
use candle_core::quantized::{gguf_file, QMatMul};
use candle_core::{DType, Device, Module, Result, Tensor};
use std::path::Path;

/// How to hold the matrix weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightMode {
    /// As stored in the file.
    #[default]
    AsStored,
    /// Dequantized to f32: fastest for batched decoding (the k samples of a prompt), 4 bytes a
    /// weight (540 MB for a 135M model).
    F32,
}

/// Shapes and constants from the GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// Transformer blocks.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention).
    pub kv_heads: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Per-head size.
    pub head_dim: usize,
    /// RMS norm epsilon.
    pub eps: f64,
    /// Rotary base.
    pub rope_theta: f32,
    /// Longest context.
    pub context: usize,
    /// Vocabulary size.
    pub vocab: usize,
}

/// A projection: quantized as stored, or f32 (see [`Dense`]).
enum Proj {
    Quantized(QMatMul),
    Dense(Dense),
}

impl Proj {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Quantized(q) => q.forward(x),
            Self::Dense(d) => d.forward(x),
        }
    }
}

struct Layer {
    attn_norm: Tensor,
    q: Proj,
    k: Proj,
    v: Proj,
    /// Qwen2's Q/K/V biases.
    qkv_bias: Option<(Tensor, Tensor, Tensor)>,
    /// Qwen3's per-head RMS norms of Q and K.
    qk_norm: Option<(Tensor, Tensor)>,
    o: Proj,
    ffn_norm: Tensor,
    gate: Proj,
    up: Proj,
    down: Proj,
}

/// A loaded model.
pub struct Llama {
    /// Its configuration.
    pub config: LlamaConfig,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    output: Proj,
    cos: Tensor,
    sin: Tensor,
    /// Rotate-half (NEOX) rotary embeddings rather than interleaved pairs.
    neox: bool,
    device: Device,
}

fn meta_u32(c: &gguf_file::Content, key: &str, path: &Path) -> std::result::Result<usize, LmError> {
    c.metadata
        .get(key)
        .ok_or_else(|| LmError::file(path, format!("GGUF metadata has no `{key}`")))?
        .to_u32()
        .map(|v| v as usize)
        .map_err(|e| LmError::file(path, format!("GGUF metadata `{key}`: {e}")))
}

fn meta_f32(c: &gguf_file::Content, key: &str) -> Option<f32> {
    c.metadata.get(key).and_then(|v| v.to_f32().ok())
}

impl LlamaConfig {
    /// Reads the shapes and constants of a llama-family GGUF file (`llama`, `qwen2`, `qwen3`),
    /// with its architecture name; `vocab` is left 0 (the embedding tells it).
    pub fn from_gguf(
        c: &gguf_file::Content,
        path: &Path,
    ) -> std::result::Result<(String, Self), LmError> {
        let arch = c
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        if !matches!(arch.as_str(), "llama" | "qwen2" | "qwen3") {
            return Err(LmError::Unsupported(format!(
                "{}: architecture `{arch}` is not supported (llama, qwen2, qwen3)",
                path.display()
            )));
        }
        let p = |k: &str| format!("{arch}.{k}");
        let heads = meta_u32(c, &p("attention.head_count"), path)?;
        let hidden = meta_u32(c, &p("embedding_length"), path)?;
        let config = LlamaConfig {
            layers: meta_u32(c, &p("block_count"), path)?,
            heads,
            kv_heads: meta_u32(c, &p("attention.head_count_kv"), path).unwrap_or(heads),
            hidden,
            head_dim: meta_u32(c, &p("attention.key_length"), path).unwrap_or(hidden / heads),
            eps: meta_f32(c, &p("attention.layer_norm_rms_epsilon")).unwrap_or(1e-5) as f64,
            rope_theta: meta_f32(c, &p("rope.freq_base")).unwrap_or(10_000.0),
            context: meta_u32(c, &p("context_length"), path).unwrap_or(2048),
            vocab: 0,
        };
        Ok((arch, config))
    }
}

/// The rotary tables `(cos, sin)`, `[context, head_dim / 2]`: inverse frequencies
/// `theta^(-2i/d)`, each divided by Llama 3.1's per-frequency factor where the file has them.
pub fn rotary_tables(
    config: &LlamaConfig,
    divisors: Option<&[f32]>,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let half = config.head_dim / 2;
    let inv: Vec<f32> = (0..half)
        .map(|i| {
            let f = 1.0
                / config
                    .rope_theta
                    .powf(2.0 * i as f32 / config.head_dim as f32);
            f / divisors.map_or(1.0, |d| d[i])
        })
        .collect();
    let inv = Tensor::from_vec(inv, (1, half), device)?;
    let t = Tensor::arange(0u32, config.context as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((config.context, 1))?;
    let freqs = t.broadcast_mul(&inv)?;
    Ok((freqs.cos()?, freqs.sin()?))
}

/// Llama 3.1's per-frequency rotary divisors (`rope_freqs.weight`), when the file has them.
pub fn rope_divisors(
    c: &gguf_file::Content,
    f: &mut std::fs::File,
    path: &Path,
    head_dim: usize,
) -> std::result::Result<Option<Vec<f32>>, LmError> {
    if !c.tensor_infos.contains_key("rope_freqs.weight") {
        return Ok(None);
    }
    let factors = c
        .tensor(f, "rope_freqs.weight", &Device::Cpu)
        .map_err(|e| LmError::file(path, format!("tensor `rope_freqs.weight`: {e}")))?
        .dequantize(&Device::Cpu)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    if factors.len() != head_dim / 2 {
        return Err(LmError::file(
            path,
            format!(
                "rope_freqs has {} factors, expected {}",
                factors.len(),
                head_dim / 2
            ),
        ));
    }
    Ok(Some(factors))
}

impl Llama {
    /// Loads a llama-family GGUF file (`llama`, `qwen2`, `qwen3`).
    pub fn load(path: &Path, device: &Device) -> std::result::Result<Self, LmError> {
        Self::load_with(path, device, WeightMode::AsStored)
    }

    /// Loads a llama-family GGUF file, holding weights as `mode` says.
    pub fn load_with(
        path: &Path,
        device: &Device,
        mode: WeightMode,
    ) -> std::result::Result<Self, LmError> {
        let qm = |t: candle_core::quantized::QTensor| -> Result<Proj> {
            match mode {
                WeightMode::AsStored => Ok(Proj::Quantized(QMatMul::from_qtensor(t)?)),
                WeightMode::F32 => Ok(Proj::Dense(Dense::from_out_in(
                    &t.dequantize(device)?,
                    None,
                )?)),
            }
        };
        let mut f = std::fs::File::open(path).map_err(|e| LmError::file(path, e))?;
        let c = gguf_file::Content::read(&mut f)
            .map_err(|e| LmError::file(path, format!("not a GGUF file: {e}")))?;
        let (arch, config) = LlamaConfig::from_gguf(&c, path)?;
        let mut tensor = |name: &str| {
            c.tensor(&mut f, name, device)
                .map_err(|e| LmError::file(path, format!("tensor `{name}`: {e}")))
        };
        let embed_q = tensor("token_embd.weight")?;
        let embed = embed_q.dequantize(device)?;
        let mut config = config;
        config.vocab = embed.dim(0)?;
        let mut layers = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let has = |n: &str| c.tensor_infos.contains_key(&format!("blk.{i}.{n}"));
            let (with_bias, with_norm) = (has("attn_q.bias"), has("attn_q_norm.weight"));
            let mut t = |n: &str| tensor(&format!("blk.{i}.{n}"));
            let qkv_bias = if with_bias {
                Some((
                    t("attn_q.bias")?.dequantize(device)?,
                    t("attn_k.bias")?.dequantize(device)?,
                    t("attn_v.bias")?.dequantize(device)?,
                ))
            } else {
                None
            };
            let qk_norm = if with_norm {
                Some((
                    t("attn_q_norm.weight")?.dequantize(device)?,
                    t("attn_k_norm.weight")?.dequantize(device)?,
                ))
            } else {
                None
            };
            let mut t = |n: &str| tensor(&format!("blk.{i}.{n}.weight"));
            layers.push(Layer {
                attn_norm: t("attn_norm")?.dequantize(device)?,
                q: qm(t("attn_q")?)?,
                k: qm(t("attn_k")?)?,
                v: qm(t("attn_v")?)?,
                qkv_bias,
                qk_norm,
                o: qm(t("attn_output")?)?,
                ffn_norm: t("ffn_norm")?.dequantize(device)?,
                gate: qm(t("ffn_gate")?)?,
                up: qm(t("ffn_up")?)?,
                down: qm(t("ffn_down")?)?,
            });
        }
        let norm = tensor("output_norm.weight")?.dequantize(device)?;
        let output = match tensor("output.weight") {
            Ok(o) => qm(o)?,
            Err(_) => qm(embed_q)?,
        };
        let divisors = rope_divisors(&c, &mut f, path, config.head_dim)?;
        let (cos, sin) = rotary_tables(&config, divisors.as_deref(), device)?;
        Ok(Self {
            cos,
            sin,
            config,
            embed,
            layers,
            norm,
            output,
            neox: arch != "llama",
            device: device.clone(),
        })
    }
}

/// llama.cpp's permutation of Q/K rows (`convert_hf_to_gguf.py`, `permute`): Hugging Face's
/// rotate-half layout to the interleaved pairs this code's rotary embedding expects.
fn permute_for_interleaved(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (out, inp) = w.dims2()?;
    w.reshape((heads, 2, out / heads / 2, inp))?
        .transpose(1, 2)?
        .reshape((out, inp))?
        .contiguous()
}

impl Llama {
    /// Loads a Hugging Face `llama` folder (`config.json` + safetensors, as `detox finetune`
    /// writes it and `transformers` saves it), in f32. Q/K rows are permuted into the
    /// interleaved layout GGUF files hold, so both run through the same code.
    pub fn load_hf(dir: &Path, device: &Device) -> std::result::Result<Self, LmError> {
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| LmError::file(&cfg_path, e))?;
        let c: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| LmError::file(&cfg_path, e))?;
        let num = |k: &str| -> std::result::Result<usize, LmError> {
            c[k].as_u64()
                .map(|v| v as usize)
                .ok_or_else(|| LmError::file(&cfg_path, format!("`{k}` missing or not a number")))
        };
        if !c["rope_scaling"].is_null() {
            return Err(LmError::Unsupported(format!(
                "{}: rope_scaling is not supported in model folders; use the GGUF file",
                cfg_path.display()
            )));
        }
        let heads = num("num_attention_heads")?;
        let hidden = num("hidden_size")?;
        let config = LlamaConfig {
            layers: num("num_hidden_layers")?,
            heads,
            kv_heads: num("num_key_value_heads").unwrap_or(heads),
            hidden,
            head_dim: num("head_dim").unwrap_or(hidden / heads),
            eps: c["rms_norm_eps"].as_f64().unwrap_or(1e-5),
            rope_theta: c["rope_theta"].as_f64().unwrap_or(10_000.0) as f32,
            context: num("max_position_embeddings").unwrap_or(2048),
            vocab: num("vocab_size")?,
        };
        let mut w = crate::load::read_weights(dir, device)?;
        let mut take = |name: &str| -> std::result::Result<Tensor, LmError> {
            w.remove(name)
                .ok_or_else(|| LmError::file(dir, format!("no tensor `{name}`")))
        };
        let dense = |t: Tensor| -> Result<Proj> { Ok(Proj::Dense(Dense::from_out_in(&t, None)?)) };
        let embed = take("model.embed_tokens.weight")?;
        let mut layers = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let mut t = |n: &str| take(&format!("model.layers.{i}.{n}.weight"));
            let q = permute_for_interleaved(&t("self_attn.q_proj")?, config.heads)?;
            let k = permute_for_interleaved(&t("self_attn.k_proj")?, config.kv_heads)?;
            layers.push(Layer {
                attn_norm: t("input_layernorm")?,
                q: dense(q)?,
                k: dense(k)?,
                v: dense(t("self_attn.v_proj")?)?,
                qkv_bias: None,
                qk_norm: None,
                o: dense(t("self_attn.o_proj")?)?,
                ffn_norm: t("post_attention_layernorm")?,
                gate: dense(t("mlp.gate_proj")?)?,
                up: dense(t("mlp.up_proj")?)?,
                down: dense(t("mlp.down_proj")?)?,
            });
        }
        let norm = take("model.norm.weight")?;
        let output = match take("lm_head.weight") {
            Ok(o) => dense(o)?,
            Err(_) => dense(embed.clone())?,
        };
        let (cos, sin) = rotary_tables(&config, None, device)?;
        Ok(Self {
            cos,
            sin,
            config,
            embed,
            layers,
            norm,
            output,
            neox: false,
            device: device.clone(),
        })
    }
}

impl CausalLm for Llama {
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
        let (h, kvh, d) = (
            self.config.heads,
            self.config.kv_heads,
            self.config.head_dim,
        );
        let mut x =
            self.embed
                .index_select(&ids.flatten_all()?, 0)?
                .reshape((b, l, self.config.hidden))?;
        let cos = self.cos.narrow(0, pos, l)?;
        let sin = self.sin.narrow(0, pos, l)?;
        let mask = causal_mask(pos, l, &self.device)?;
        for (i, layer) in self.layers.iter().enumerate() {
            let y = candle_nn::ops::rms_norm(&x, &layer.attn_norm, self.config.eps as f32)?;
            let (mut q, mut k, mut v) = (
                layer.q.forward(&y)?,
                layer.k.forward(&y)?,
                layer.v.forward(&y)?,
            );
            if let Some((bq, bk, bv)) = &layer.qkv_bias {
                q = q.broadcast_add(bq)?;
                k = k.broadcast_add(bk)?;
                v = v.broadcast_add(bv)?;
            }
            let mut q = q.reshape((b, l, h, d))?;
            let mut k = k.reshape((b, l, kvh, d))?;
            if let Some((nq, nk)) = &layer.qk_norm {
                let eps = self.config.eps as f32;
                q = candle_nn::ops::rms_norm(&q.contiguous()?, nq, eps)?;
                k = candle_nn::ops::rms_norm(&k.contiguous()?, nk, eps)?;
            }
            let q = q.transpose(1, 2)?.contiguous()?;
            let k = k.transpose(1, 2)?.contiguous()?;
            let v = v.reshape((b, l, kvh, d))?.transpose(1, 2)?.contiguous()?;
            let (q, k) = if self.neox {
                (
                    candle_nn::rotary_emb::rope(&q, &cos, &sin)?,
                    candle_nn::rotary_emb::rope(&k, &cos, &sin)?,
                )
            } else {
                (
                    candle_nn::rotary_emb::rope_i(&q, &cos, &sin)?,
                    candle_nn::rotary_emb::rope_i(&k, &cos, &sin)?,
                )
            };
            let (k, v) = cache.append(i, k, v)?;
            let t = k.dim(2)?;
            let rep = h / kvh;
            let expand = |x: &Tensor| -> Result<Tensor> {
                if rep == 1 {
                    return Ok(x.clone());
                }
                x.unsqueeze(2)?
                    .expand((b, kvh, rep, t, d))?
                    .reshape((b, h, t, d))
            };
            let (k, v) = (expand(&k)?, expand(&v)?);
            let ctx = attend(&q, &k, &v, mask.as_ref())?
                .transpose(1, 2)?
                .reshape((b, l, h * d))?;
            x = (x + layer.o.forward(&ctx)?)?;
            let y = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, self.config.eps as f32)?;
            let g = candle_nn::ops::silu(&layer.gate.forward(&y)?)?;
            let u = layer.up.forward(&y)?;
            x = (x + layer.down.forward(&(g * u)?)?)?;
        }
        cache.advance(l);
        let x = if all {
            x
        } else {
            x.narrow(1, l - 1, 1)?.squeeze(1)?
        };
        let x = candle_nn::ops::rms_norm(&x.contiguous()?, &self.norm, self.config.eps as f32)?;
        self.output.forward(&x)
    }
}
