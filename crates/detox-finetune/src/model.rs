//! Language models whose forward pass has a backward pass: GPT-2 (a Hugging Face folder) and
//! the llama family (a GGUF file, dequantized), built from candle operations that all carry
//! gradients (`layer_norm_slow`, `rms_norm_slow`, `rope_slow`, `softmax`, plain matrix
//! products; candle's fused kernels cut the graph silently, `../shared/NOTES.md`). Parameters
//! are held as Hugging Face names and layouts, so what is trained is what is saved: GGUF's
//! llama Q/K rows are un-permuted on load (llama.cpp's `convert_hf_to_gguf.py` permutes them
//! for interleaved rotary embeddings) and the rotate-half kind is used, as `transformers` does.
//!
//! Checked against detox-lm's inference path to 1e-4 (`tests/forward.rs`) and, trained, against
//! PyTorch (`tests/parity.rs`).

use crate::linear::{tracked, Layout, Linear, Lora};
use crate::FinetuneError;
use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Result, Tensor, Var, D};
use detox_lm::gpt2::Gpt2Config;
use detox_lm::llama::LlamaConfig;
use detox_lm::LmError;
use serde_json::{json, Value};
use std::path::Path;

/// A causal language model being trained.
pub trait Trainable {
    /// Logits `[b, l, vocab]` of token ids `[b, l]` (u32), every position.
    fn forward(&self, ids: &Tensor) -> Result<Tensor>;
    /// Every base parameter, by its Hugging Face name, in a fixed order (tied weights once).
    fn parameters(&self) -> Vec<(String, &Var)>;
    /// The projections LoRA adapts (attention and MLP), by module name.
    fn projections_mut(&mut self) -> Vec<(String, &mut Linear)>;
    /// The same, read-only.
    fn projections(&self) -> Vec<(String, &Linear)>;
    /// `config.json` of the Hugging Face folder it saves as.
    fn config_json(&self) -> Value;
    /// The weights to save: Hugging Face names and layouts, LoRA merged.
    fn export(&self) -> Result<Vec<(String, Tensor)>> {
        let merged: std::collections::HashMap<String, Tensor> = self
            .projections()
            .into_iter()
            .map(|(n, l)| Ok((format!("{n}.weight"), l.merged_weight()?)))
            .collect::<Result<_>>()?;
        Ok(self
            .parameters()
            .into_iter()
            .map(|(n, v)| {
                let t = merged
                    .get(&n)
                    .cloned()
                    .unwrap_or_else(|| v.as_tensor().clone());
                (n, t)
            })
            .collect())
    }
    /// The longest sequence it reads.
    fn context(&self) -> usize;
    /// The end-of-text token put between documents.
    fn eos(&self) -> Option<u32>;
    /// Freezes every base parameter (LoRA trains only its adapters).
    fn freeze(&mut self);
}

/// The parameters that take no weight decay, as `transformers`' Trainer leaves them out
/// (`get_decay_parameter_names`: biases and normalisation weights).
pub fn no_decay(name: &str) -> bool {
    name.ends_with("bias")
        || name.contains("norm")
        || name.contains(".ln_")
        || name.starts_with("ln_")
}

/// The projections of every block, `(prefix.i.name, &block.field)` (or `&mut`), in order:
/// one list for both borrows.
macro_rules! projections {
    ($blocks:expr, $prefix:literal, $($r:tt)+) => {
        projections!(@go $blocks, $prefix, [$($r)+])
    };
    (@go $blocks:expr, $prefix:literal, [& mut, $($name:literal => $field:ident),+ $(,)?]) => {{
        let mut out = Vec::new();
        for (i, b) in $blocks.enumerate() {
            $(out.push((format!("{}.{i}.{}", $prefix, $name), &mut b.$field));)+
        }
        out
    }};
    (@go $blocks:expr, $prefix:literal, [&, $($name:literal => $field:ident),+ $(,)?]) => {{
        let mut out = Vec::new();
        for (i, b) in $blocks.enumerate() {
            $(out.push((format!("{}.{i}.{}", $prefix, $name), &b.$field));)+
        }
        out
    }};
}

fn var(t: Tensor) -> Result<Var> {
    Var::from_tensor(&t.to_dtype(DType::F32)?.contiguous()?)
}

/// The causal mask added to attention scores `[l, l]`: 0 on and below the diagonal, -inf above.
fn causal_mask(l: usize, device: &Device) -> Result<Tensor> {
    let v: Vec<f32> = (0..l)
        .flat_map(|i| (0..l).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(v, (l, l), device)
}

/// Scaled dot-product attention with the causal mask; `q`, `k`, `v` `[b, h, l, d]`.
fn attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    let (_, _, l, d) = q.dims4()?;
    let scores = (q.matmul(&k.t()?)? / (d as f64).sqrt())?;
    let scores = scores.broadcast_add(&causal_mask(l, q.device())?)?;
    candle_nn::ops::softmax(&scores, D::Minus1)?.matmul(v)
}

struct Gpt2Block {
    ln_1: (Var, Var),
    c_attn: Linear,
    c_proj: Linear,
    ln_2: (Var, Var),
    c_fc: Linear,
    mlp_proj: Linear,
}

/// GPT-2, trainable.
pub struct Gpt2Train {
    /// Its configuration.
    pub config: Gpt2Config,
    raw_config: Value,
    wte: Var,
    wpe: Var,
    blocks: Vec<Gpt2Block>,
    ln_f: (Var, Var),
    frozen: bool,
}

impl Gpt2Train {
    /// Loads a Hugging Face GPT-2 folder.
    pub fn load(dir: &Path, device: &Device) -> std::result::Result<Self, FinetuneError> {
        let config = Gpt2Config::read(dir)?;
        let cfg_path = dir.join("config.json");
        let raw_config: Value = std::fs::read_to_string(&cfg_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        let mut w = detox_lm::load::read_weights(dir, device)?;
        let prefix = if w.contains_key("transformer.wte.weight") {
            "transformer."
        } else {
            ""
        };
        let mut take = |name: &str| -> std::result::Result<Var, FinetuneError> {
            let t = w
                .remove(&format!("{prefix}{name}"))
                .ok_or_else(|| LmError::file(dir, format!("no tensor `{prefix}{name}`")))?;
            Ok(var(t)?)
        };
        let wte = take("wte.weight")?;
        let wpe = take("wpe.weight")?;
        let mut blocks = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let mut t = |n: &str| take(&format!("h.{i}.{n}"));
            let mut conv = |n: &str| -> std::result::Result<Linear, FinetuneError> {
                Ok(Linear::new(
                    t(&format!("{n}.weight"))?,
                    Some(t(&format!("{n}.bias"))?),
                    Layout::InOut,
                ))
            };
            let c_attn = conv("attn.c_attn")?;
            let c_proj = conv("attn.c_proj")?;
            let c_fc = conv("mlp.c_fc")?;
            let mlp_proj = conv("mlp.c_proj")?;
            let ln_1 = (t("ln_1.weight")?, t("ln_1.bias")?);
            let ln_2 = (t("ln_2.weight")?, t("ln_2.bias")?);
            blocks.push(Gpt2Block {
                ln_1,
                c_attn,
                c_proj,
                ln_2,
                c_fc,
                mlp_proj,
            });
        }
        let ln_f = (take("ln_f.weight")?, take("ln_f.bias")?);
        Ok(Self {
            config,
            raw_config,
            wte,
            wpe,
            blocks,
            ln_f,
            frozen: false,
        })
    }
}

fn ln(x: &Tensor, p: &(Var, Var), eps: f64, frozen: bool) -> Result<Tensor> {
    candle_nn::ops::layer_norm_slow(
        x,
        &tracked(&p.0, frozen),
        &tracked(&p.1, frozen),
        eps as f32,
    )
}

impl Trainable for Gpt2Train {
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, l) = ids.dims2()?;
        let (hd, h) = (self.config.hidden, self.config.heads);
        let d = hd / h;
        let fz = self.frozen;
        let wte = tracked(&self.wte, fz);
        let tok = wte
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, l, hd))?;
        let mut x = tok.broadcast_add(&tracked(&self.wpe, fz).narrow(0, 0, l)?)?;
        let eps = self.config.eps;
        for blk in &self.blocks {
            let a = ln(&x, &blk.ln_1, eps, fz)?;
            let qkv = blk.c_attn.forward(&a)?.reshape((b, l, 3, h, d))?;
            let part = |j: usize| -> Result<Tensor> {
                qkv.narrow(2, j, 1)?
                    .squeeze(2)?
                    .transpose(1, 2)?
                    .contiguous()
            };
            let ctx = attention(&part(0)?, &part(1)?, &part(2)?)?
                .transpose(1, 2)?
                .reshape((b, l, hd))?;
            x = (x + blk.c_proj.forward(&ctx)?)?;
            let m = ln(&x, &blk.ln_2, eps, fz)?;
            let f = blk.c_fc.forward(&m)?;
            let f = if self.config.tanh_gelu {
                f.gelu()?
            } else {
                f.gelu_erf()?
            };
            x = (x + blk.mlp_proj.forward(&f)?)?;
        }
        let x = ln(&x, &self.ln_f, eps, fz)?;
        x.broadcast_matmul(&wte.t()?)
    }

    fn parameters(&self) -> Vec<(String, &Var)> {
        let mut out = vec![
            ("transformer.wte.weight".to_string(), &self.wte),
            ("transformer.wpe.weight".to_string(), &self.wpe),
        ];
        for (i, b) in self.blocks.iter().enumerate() {
            let p = |n: &str| format!("transformer.h.{i}.{n}");
            out.push((p("ln_1.weight"), &b.ln_1.0));
            out.push((p("ln_1.bias"), &b.ln_1.1));
            for (n, lin) in [("attn.c_attn", &b.c_attn), ("attn.c_proj", &b.c_proj)] {
                out.push((p(&format!("{n}.weight")), &lin.weight));
                if let Some(bias) = &lin.bias {
                    out.push((p(&format!("{n}.bias")), bias));
                }
            }
            out.push((p("ln_2.weight"), &b.ln_2.0));
            out.push((p("ln_2.bias"), &b.ln_2.1));
            for (n, lin) in [("mlp.c_fc", &b.c_fc), ("mlp.c_proj", &b.mlp_proj)] {
                out.push((p(&format!("{n}.weight")), &lin.weight));
                if let Some(bias) = &lin.bias {
                    out.push((p(&format!("{n}.bias")), bias));
                }
            }
        }
        out.push(("transformer.ln_f.weight".into(), &self.ln_f.0));
        out.push(("transformer.ln_f.bias".into(), &self.ln_f.1));
        out
    }

    fn projections_mut(&mut self) -> Vec<(String, &mut Linear)> {
        projections!(self.blocks.iter_mut(), "transformer.h", &mut,
            "attn.c_attn" => c_attn, "attn.c_proj" => c_proj, "mlp.c_fc" => c_fc, "mlp.c_proj" => mlp_proj)
    }

    fn projections(&self) -> Vec<(String, &Linear)> {
        projections!(self.blocks.iter(), "transformer.h", &,
            "attn.c_attn" => c_attn, "attn.c_proj" => c_proj, "mlp.c_fc" => c_fc, "mlp.c_proj" => mlp_proj)
    }

    fn config_json(&self) -> Value {
        let mut c = self.raw_config.clone();
        if !c.is_object() {
            c = json!({"model_type": "gpt2"});
        }
        c["architectures"] = json!(["GPT2LMHeadModel"]);
        c["torch_dtype"] = json!("float32");
        c
    }

    fn context(&self) -> usize {
        self.config.context
    }

    fn eos(&self) -> Option<u32> {
        self.config.eos
    }

    fn freeze(&mut self) {
        self.frozen = true;
        for (_, l) in self.projections_mut() {
            l.frozen = true;
        }
    }
}

struct LlamaLayer {
    attn_norm: Var,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    ffn_norm: Var,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// A llama-architecture model (SmolLM2, Llama, Mistral layouts), trainable.
pub struct LlamaTrain {
    /// Its configuration.
    pub config: LlamaConfig,
    intermediate: usize,
    embed: Var,
    layers: Vec<LlamaLayer>,
    norm: Var,
    /// The output layer when not tied to the embedding.
    lm_head: Option<Var>,
    cos: Tensor,
    sin: Tensor,
    bos: Option<u32>,
    eos: Option<u32>,
    frozen: bool,
}

/// Undoes llama.cpp's permutation of Q/K rows (`convert_hf_to_gguf.py`, `permute`):
/// `w.reshape(heads, d/2, 2, in).swapaxes(1, 2)` back to `(heads, 2, d/2, in)`.
fn unpermute(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (out, inp) = w.dims2()?;
    w.reshape((heads, out / heads / 2, 2, inp))?
        .transpose(1, 2)?
        .reshape((out, inp))?
        .contiguous()
}

impl LlamaTrain {
    /// Loads a `llama`-architecture GGUF file, every tensor dequantized to f32.
    pub fn load_gguf(path: &Path, device: &Device) -> std::result::Result<Self, FinetuneError> {
        let mut f = std::fs::File::open(path).map_err(|e| LmError::file(path, e))?;
        let c = gguf_file::Content::read(&mut f)
            .map_err(|e| LmError::file(path, format!("not a GGUF file: {e}")))?;
        let (arch, mut config) = LlamaConfig::from_gguf(&c, path)?;
        if arch != "llama" {
            return Err(LmError::Unsupported(format!(
                "{}: training supports the `llama` architecture (SmolLM2, Llama, Mistral), not `{arch}`",
                path.display()
            ))
            .into());
        }
        let token = |k: &str| {
            c.metadata
                .get(&format!("tokenizer.ggml.{k}"))
                .and_then(|v| v.to_u32().ok())
        };
        let (bos, eos) = (token("bos_token_id"), token("eos_token_id"));
        let divisors = detox_lm::llama::rope_divisors(&c, &mut f, path, config.head_dim)?;
        let mut tensor = |name: &str| -> std::result::Result<Tensor, FinetuneError> {
            let q = c
                .tensor(&mut f, name, device)
                .map_err(|e| LmError::file(path, format!("tensor `{name}`: {e}")))?;
            Ok(q.dequantize(device)?)
        };
        let embed = tensor("token_embd.weight")?;
        config.vocab = embed.dim(0)?;
        let lin = |t: Tensor| -> Result<Linear> { Ok(Linear::new(var(t)?, None, Layout::OutIn)) };
        let mut layers = Vec::with_capacity(config.layers);
        let mut intermediate = 0;
        for i in 0..config.layers {
            let mut t = |n: &str| tensor(&format!("blk.{i}.{n}.weight"));
            let q = unpermute(&t("attn_q")?, config.heads)?;
            let k = unpermute(&t("attn_k")?, config.kv_heads)?;
            let up = t("ffn_up")?;
            intermediate = up.dim(0)?;
            layers.push(LlamaLayer {
                attn_norm: var(t("attn_norm")?)?,
                q: lin(q)?,
                k: lin(k)?,
                v: lin(t("attn_v")?)?,
                o: lin(t("attn_output")?)?,
                ffn_norm: var(t("ffn_norm")?)?,
                gate: lin(t("ffn_gate")?)?,
                up: lin(up)?,
                down: lin(t("ffn_down")?)?,
            });
        }
        let norm = var(tensor("output_norm.weight")?)?;
        let lm_head = if c.tensor_infos.contains_key("output.weight") {
            Some(var(tensor("output.weight")?)?)
        } else {
            None
        };
        let (cos, sin) = detox_lm::llama::rotary_tables(&config, divisors.as_deref(), device)?;
        Ok(Self {
            config,
            intermediate,
            embed: var(embed)?,
            layers,
            norm,
            lm_head,
            cos,
            sin,
            bos,
            eos,
            frozen: false,
        })
    }
}

impl Trainable for LlamaTrain {
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, l) = ids.dims2()?;
        let c = &self.config;
        let (h, kvh, d) = (c.heads, c.kv_heads, c.head_dim);
        let eps = c.eps as f32;
        let fz = self.frozen;
        let embed = tracked(&self.embed, fz);
        let mut x = embed
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, l, c.hidden))?;
        let cos = self.cos.narrow(0, 0, l)?;
        let sin = self.sin.narrow(0, 0, l)?;
        let rep = h / kvh;
        for layer in &self.layers {
            let y = candle_nn::ops::rms_norm_slow(&x, &tracked(&layer.attn_norm, fz), eps)?;
            let heads = |t: Tensor, n: usize| -> Result<Tensor> {
                t.reshape((b, l, n, d))?.transpose(1, 2)?.contiguous()
            };
            let q = heads(layer.q.forward(&y)?, h)?;
            let k = heads(layer.k.forward(&y)?, kvh)?;
            let v = heads(layer.v.forward(&y)?, kvh)?;
            let q = candle_nn::rotary_emb::rope_slow(&q, &cos, &sin)?;
            let k = candle_nn::rotary_emb::rope_slow(&k, &cos, &sin)?;
            let expand = |t: Tensor| -> Result<Tensor> {
                if rep == 1 {
                    return Ok(t);
                }
                t.unsqueeze(2)?
                    .expand((b, kvh, rep, l, d))?
                    .reshape((b, h, l, d))
            };
            let ctx = attention(&q, &expand(k)?, &expand(v)?)?
                .transpose(1, 2)?
                .reshape((b, l, h * d))?;
            x = (x + layer.o.forward(&ctx)?)?;
            let y = candle_nn::ops::rms_norm_slow(&x, &tracked(&layer.ffn_norm, fz), eps)?;
            let g = candle_nn::ops::silu(&layer.gate.forward(&y)?)?;
            x = (x + layer.down.forward(&(g * layer.up.forward(&y)?)?)?)?;
        }
        let x = candle_nn::ops::rms_norm_slow(&x, &tracked(&self.norm, fz), eps)?;
        let head = match &self.lm_head {
            Some(h) => tracked(h, fz),
            None => embed,
        };
        x.broadcast_matmul(&head.t()?)
    }

    fn parameters(&self) -> Vec<(String, &Var)> {
        let mut out = vec![("model.embed_tokens.weight".to_string(), &self.embed)];
        for (i, ly) in self.layers.iter().enumerate() {
            let p = |n: &str| format!("model.layers.{i}.{n}");
            out.push((p("input_layernorm.weight"), &ly.attn_norm));
            for (n, lin) in [
                ("self_attn.q_proj", &ly.q),
                ("self_attn.k_proj", &ly.k),
                ("self_attn.v_proj", &ly.v),
                ("self_attn.o_proj", &ly.o),
            ] {
                out.push((p(&format!("{n}.weight")), &lin.weight));
            }
            out.push((p("post_attention_layernorm.weight"), &ly.ffn_norm));
            for (n, lin) in [
                ("mlp.gate_proj", &ly.gate),
                ("mlp.up_proj", &ly.up),
                ("mlp.down_proj", &ly.down),
            ] {
                out.push((p(&format!("{n}.weight")), &lin.weight));
            }
        }
        out.push(("model.norm.weight".into(), &self.norm));
        if let Some(hd) = &self.lm_head {
            out.push(("lm_head.weight".into(), hd));
        }
        out
    }

    fn projections_mut(&mut self) -> Vec<(String, &mut Linear)> {
        projections!(self.layers.iter_mut(), "model.layers", &mut,
            "self_attn.q_proj" => q, "self_attn.k_proj" => k, "self_attn.v_proj" => v,
            "self_attn.o_proj" => o, "mlp.gate_proj" => gate, "mlp.up_proj" => up,
            "mlp.down_proj" => down)
    }

    fn projections(&self) -> Vec<(String, &Linear)> {
        projections!(self.layers.iter(), "model.layers", &,
            "self_attn.q_proj" => q, "self_attn.k_proj" => k, "self_attn.v_proj" => v,
            "self_attn.o_proj" => o, "mlp.gate_proj" => gate, "mlp.up_proj" => up,
            "mlp.down_proj" => down)
    }

    fn config_json(&self) -> Value {
        let c = &self.config;
        json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": c.vocab,
            "hidden_size": c.hidden,
            "intermediate_size": self.intermediate,
            "num_hidden_layers": c.layers,
            "num_attention_heads": c.heads,
            "num_key_value_heads": c.kv_heads,
            "head_dim": c.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": c.eps,
            "rope_theta": c.rope_theta,
            "max_position_embeddings": c.context,
            "tie_word_embeddings": self.lm_head.is_none(),
            "attention_bias": false,
            "mlp_bias": false,
            "bos_token_id": self.bos,
            "eos_token_id": self.eos,
            "torch_dtype": "float32",
        })
    }

    fn context(&self) -> usize {
        self.config.context
    }

    fn eos(&self) -> Option<u32> {
        self.eos
    }

    fn freeze(&mut self) {
        self.frozen = true;
        for (_, l) in self.projections_mut() {
            l.frozen = true;
        }
    }
}

/// Puts a LoRA adapter of rank `r` on every projection (`A` from `init`, `B` zero) and
/// freezes the base parameters.
pub fn add_lora(
    model: &mut dyn Trainable,
    rank: usize,
    alpha: f64,
    init: &mut dyn FnMut(&str, usize, usize) -> Result<Tensor>,
) -> Result<()> {
    model.freeze();
    for (name, lin) in model.projections_mut() {
        let (inp, out) = lin.dims()?;
        let device = lin.weight.device().clone();
        let a = init(&name, rank, inp)?;
        lin.lora = Some(Lora {
            a: Var::from_tensor(&a.to_dtype(DType::F32)?)?,
            b: Var::zeros((out, rank), DType::F32, &device)?,
            scale: alpha / rank as f64,
        });
    }
    Ok(())
}

/// The trainable variables with their names: the LoRA matrices when adapters are on
/// (`<module>.lora_A` / `.lora_B`), else every base parameter.
pub fn trainable(model: &dyn Trainable) -> Vec<(String, Var)> {
    let loras: Vec<(String, Var)> = model
        .projections()
        .into_iter()
        .filter_map(|(n, l)| l.lora.as_ref().map(|x| (n, x)))
        .flat_map(|(n, x)| {
            [
                (format!("{n}.lora_A"), x.a.clone()),
                (format!("{n}.lora_B"), x.b.clone()),
            ]
        })
        .collect();
    if !loras.is_empty() {
        return loras;
    }
    model
        .parameters()
        .into_iter()
        .map(|(n, v)| (n, v.clone()))
        .collect()
}
