//! `detox finetune` as a library: settings, the run folder (`run.json`, atomic checkpoints,
//! the final Hugging Face folder), the loop, resume after a kill, and divergence stops.
//!
//! A run folder holds `run.json` (every setting, the data's sha256s, the step reached, eval
//! losses), `checkpoint/` (the trainable weights, AdamW's moments and `state.json`; written
//! to `checkpoint.new/` and swapped in by renames, so a kill leaves a whole one) and, when the
//! run ends, the model: `config.json`, `model.safetensors` (LoRA merged) and the tokenizer.
//! The order of the blocks is a function of the seed and the epoch, so the step number is the
//! whole data position, and a resumed run ends with the same weights as an uninterrupted one.

use crate::data::{epoch_order, read_blocks, Blocks, SourceFile};
use crate::model::{add_lora, no_decay, trainable, Gpt2Train, LlamaTrain, Trainable};
use crate::optim::{cosine_factor, AdamW, AdamWConfig};
use crate::step::step;
use crate::FinetuneError;
use candle_core::{Device, Tensor, Var};
use detox_core::rng::SplitMix64;
use detox_lm::tokenizer::LmTokenizer;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Every setting of a run (`run.json`; a resumed run must have the same).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneConfig {
    /// The model as given (a registry name or a path).
    pub model: String,
    /// The training inputs.
    pub train: Vec<PathBuf>,
    /// The evaluation inputs.
    pub eval: Vec<PathBuf>,
    /// The JSONL field holding the text.
    pub field: String,
    /// Tokens per block.
    pub block_size: usize,
    /// Tokens per optimizer step (gradient accumulation), rounded to whole micro-batches.
    pub batch_tokens: usize,
    /// Blocks per forward pass.
    pub micro_batch: usize,
    /// Passes over the data.
    pub epochs: usize,
    /// Stop after this many steps (fewer than the epochs give).
    pub max_steps: Option<usize>,
    /// Peak learning rate.
    pub lr: f64,
    /// Warm-up steps (linear from 0), then a half cosine to 0.
    pub warmup_steps: usize,
    /// AdamW.
    pub adamw: AdamWConfig,
    /// Gradient clipping (global L2 norm); `None`: none.
    pub max_grad_norm: Option<f64>,
    /// Seed of the block order and the LoRA initialisation.
    pub seed: u64,
    /// LoRA rank (`None`: full fine-tuning).
    pub lora_rank: Option<usize>,
    /// LoRA alpha (scale alpha / rank).
    pub lora_alpha: f64,
    /// Steps between checkpoints.
    pub checkpoint_every: usize,
}

impl FinetuneConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), FinetuneError> {
        let bad = |m: &str| Err(FinetuneError::Settings(m.to_string()));
        if self.train.is_empty() {
            return bad("--train names no file");
        }
        if self.block_size < 2 {
            return bad("--block-size must be at least 2");
        }
        if self.micro_batch == 0 || self.epochs == 0 || self.checkpoint_every == 0 {
            return bad("--micro-batch, --epochs and --checkpoint-every must be at least 1");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("--lr must be a positive number");
        }
        if self.lora_rank == Some(0) {
            return bad("--lora-rank must be at least 1");
        }
        Ok(())
    }

    /// Blocks per optimizer step: whole micro-batches reaching `batch_tokens`.
    pub fn blocks_per_step(&self) -> usize {
        let micro_tokens = self.micro_batch * self.block_size;
        self.batch_tokens.div_ceil(micro_tokens).max(1) * self.micro_batch
    }
}

/// What `run.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The settings.
    pub config: FinetuneConfig,
    /// The model file(s) read and their hashes.
    pub model_identity: Value,
    /// Training files and their hashes.
    pub train_sources: Vec<SourceFile>,
    /// Evaluation files and their hashes.
    pub eval_sources: Vec<SourceFile>,
    /// Blocks of training data.
    pub train_blocks: usize,
    /// Steps the run takes.
    pub total_steps: usize,
    /// Steps done.
    pub steps_done: usize,
    /// Eval loss (and perplexity) after each epoch.
    pub eval: Vec<EvalPoint>,
    /// Mean training loss of each step.
    pub losses: Vec<f64>,
    /// Seconds spent in training steps (summed over resumed sessions, up to the last checkpoint).
    #[serde(default)]
    pub train_seconds: f64,
    /// Tokens predicted in those steps.
    #[serde(default)]
    pub train_tokens: usize,
    /// Whether the model was written.
    pub finished: bool,
    /// detox's version.
    pub detox_version: String,
}

/// An evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalPoint {
    /// Steps done when measured.
    pub step: usize,
    /// Mean next-token loss on the eval blocks.
    pub loss: f64,
    /// `exp(loss)`.
    pub perplexity: f64,
}

/// Hears how a run goes.
pub trait TrainProgress {
    /// The run starts at `done` of `total` steps.
    fn start(&self, _done: usize, _total: usize) {}
    /// A step ended.
    fn step(&self, _step: usize, _loss: f64, _tokens_per_sec: f64) {}
    /// Something to say.
    fn message(&self, _m: &str) {}
}

/// A [`TrainProgress`] that says nothing.
pub struct Quiet;
impl TrainProgress for Quiet {}

/// The tokenizer of the model a run trains (for recipes that count tokens).
pub fn tokenizer_of(path: &Path) -> Result<LmTokenizer, FinetuneError> {
    if path.is_dir() {
        let c = detox_lm::gpt2::Gpt2Config::read(path)?;
        return Ok(LmTokenizer::from_folder(path, c.bos, c.eos)?);
    }
    Ok(LmTokenizer::from_gguf(path)?)
}

/// The model file a run trains: a GGUF file (llama) or a GPT-2 folder.
fn load_model(
    path: &Path,
    device: &Device,
) -> Result<(Box<dyn Trainable>, LmTokenizer, Value), FinetuneError> {
    if path.is_dir() {
        let m = Gpt2Train::load(path, device)?;
        let tok = LmTokenizer::from_folder(path, m.config.bos, m.config.eos)?;
        let mut files = serde_json::Map::new();
        for n in ["config.json", "model.safetensors"] {
            let p = path.join(n);
            if p.exists() {
                files.insert(
                    n.into(),
                    json!(detox_io::files::sha256_file(&p)
                        .map_err(|e| FinetuneError::Data(e.to_string()))?),
                );
            }
        }
        return Ok((
            Box::new(m),
            tok,
            json!({"kind": "gpt2", "path": path.display().to_string(), "sha256": files}),
        ));
    }
    let m = LlamaTrain::load_gguf(path, device)?;
    let tok = LmTokenizer::from_gguf(path)?;
    let sha = detox_io::files::sha256_file(path).map_err(|e| FinetuneError::Data(e.to_string()))?;
    Ok((
        Box::new(m),
        tok,
        json!({"kind": "gguf", "path": path.display().to_string(), "sha256": sha}),
    ))
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> FinetuneError {
    FinetuneError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn write_json(path: &Path, v: &impl Serialize) -> Result<(), FinetuneError> {
    let text = serde_json::to_string_pretty(v).map_err(|e| file_err(path, e))?;
    detox_io::files::write_atomic(path, text.as_bytes()).map_err(|e| file_err(path, e))
}

const CHECKPOINT: &str = "checkpoint";

/// Saves the trainable weights, the optimizer and the step into `dir/checkpoint`, swapped in
/// whole: written to `checkpoint.new`, the old one renamed away, the new one renamed in.
fn save_checkpoint(
    dir: &Path,
    vars: &[(String, Var)],
    opt: &AdamW,
    step: usize,
    record: &RunRecord,
) -> Result<(), FinetuneError> {
    let new = dir.join("checkpoint.new");
    let old = dir.join("checkpoint.old");
    let cur = dir.join(CHECKPOINT);
    let _ = std::fs::remove_dir_all(&new);
    std::fs::create_dir_all(&new).map_err(|e| file_err(&new, e))?;
    let weights: HashMap<String, Tensor> = vars
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    candle_core::safetensors::save(&weights, new.join("weights.safetensors"))?;
    let mut moments: HashMap<String, Tensor> = HashMap::new();
    for s in &opt.slots {
        moments.insert(format!("{}.m", s.name), s.m.clone());
        moments.insert(format!("{}.v", s.name), s.v.clone());
    }
    candle_core::safetensors::save(&moments, new.join("optimizer.safetensors"))?;
    // The losses and evaluations so far travel with the weights, so a resumed run's record is
    // the uninterrupted one's.
    write_json(
        &new.join("state.json"),
        &json!({
            "step": step,
            "adam_step": opt.step,
            "losses": record.losses,
            "eval": record.eval,
            "train_seconds": record.train_seconds,
            "train_tokens": record.train_tokens,
        }),
    )?;
    // fsync the files before the renames make them the checkpoint.
    for f in ["weights.safetensors", "optimizer.safetensors", "state.json"] {
        if let Ok(h) = std::fs::File::open(new.join(f)) {
            let _ = h.sync_all();
        }
    }
    let _ = std::fs::remove_dir_all(&old);
    if cur.exists() {
        std::fs::rename(&cur, &old).map_err(|e| file_err(&cur, e))?;
    }
    std::fs::rename(&new, &cur).map_err(|e| file_err(&new, e))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// Loads the checkpoint (or the old one a kill between the renames left) into the variables,
/// the optimizer and the record's losses and evaluations; returns its step.
fn load_checkpoint(
    dir: &Path,
    vars: &[(String, Var)],
    opt: &mut AdamW,
    record: &mut RunRecord,
) -> Result<Option<usize>, FinetuneError> {
    let cur = dir.join(CHECKPOINT);
    let path = if cur.join("state.json").exists() {
        cur
    } else if dir.join("checkpoint.old").join("state.json").exists() {
        dir.join("checkpoint.old")
    } else {
        return Ok(None);
    };
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(path.join("state.json")).map_err(|e| file_err(&path, e))?,
    )
    .map_err(|e| file_err(&path, e))?;
    let device = vars
        .first()
        .map(|(_, v)| v.device().clone())
        .unwrap_or(Device::Cpu);
    let w = candle_core::safetensors::load(path.join("weights.safetensors"), &device)?;
    for (n, v) in vars {
        let t = w
            .get(n)
            .ok_or_else(|| file_err(&path, format!("no weight `{n}`")))?;
        v.set(t)?;
    }
    let m = candle_core::safetensors::load(path.join("optimizer.safetensors"), &device)?;
    for s in &mut opt.slots {
        let get = |k: String| {
            m.get(&k)
                .cloned()
                .ok_or_else(|| file_err(&path, format!("no `{k}`")))
        };
        s.m = get(format!("{}.m", s.name))?;
        s.v = get(format!("{}.v", s.name))?;
    }
    opt.step = state["adam_step"].as_u64().unwrap_or(0);
    record.losses = serde_json::from_value(state["losses"].clone()).unwrap_or_default();
    record.eval = serde_json::from_value(state["eval"].clone()).unwrap_or_default();
    record.train_seconds = state["train_seconds"].as_f64().unwrap_or(0.0);
    record.train_tokens = state["train_tokens"].as_u64().unwrap_or(0) as usize;
    Ok(state["step"].as_u64().map(|s| s as usize))
}

/// PEFT's initialisation of LoRA's `A` (`kaiming_uniform_(a=√5)`: uniform in ±1/√in), seeded.
fn lora_init(seed: u64) -> impl FnMut(&str, usize, usize) -> candle_core::Result<Tensor> {
    let mut rng = SplitMix64::new(seed ^ 0x10_4a);
    move |_, r, inp| {
        let bound = 1.0 / (inp as f64).sqrt();
        let v: Vec<f32> = (0..r * inp)
            .map(|_| ((rng.unit() * 2.0 - 1.0) * bound) as f32)
            .collect();
        Tensor::from_vec(v, (r, inp), &Device::Cpu)
    }
}

fn batch_tensor(blocks: &[&Vec<u32>], device: &Device) -> candle_core::Result<Tensor> {
    let l = blocks[0].len();
    let flat: Vec<u32> = blocks.iter().flat_map(|b| b.iter().copied()).collect();
    Tensor::from_vec(flat, (blocks.len(), l), device)
}

/// Mean next-token loss over `blocks` (no gradient).
fn evaluate(
    model: &dyn Trainable,
    blocks: &Blocks,
    micro: usize,
    device: &Device,
) -> Result<f64, FinetuneError> {
    let (mut sum, mut n) = (0.0f64, 0usize);
    for chunk in blocks.blocks.chunks(micro.max(1)) {
        let refs: Vec<&Vec<u32>> = chunk.iter().collect();
        let ids = batch_tensor(&refs, device)?;
        let logits = model.forward(&ids)?.detach();
        let (s, k) = crate::loss::causal_lm_loss_sum(&logits, &ids)?;
        sum += s.to_scalar::<f32>()? as f64;
        n += k;
    }
    Ok(if n == 0 { f64::NAN } else { sum / n as f64 })
}

/// Writes the model as a Hugging Face folder into `dir`: `config.json`, `model.safetensors`
/// and the tokenizer (a GPT-2 folder's own files; a GGUF file's as `tokenizer.json` with a
/// `tokenizer_config.json` naming its special tokens).
pub fn write_model(
    dir: &Path,
    model: &dyn Trainable,
    tok: &LmTokenizer,
    source: &Path,
) -> Result<(), FinetuneError> {
    let tensors: HashMap<String, Tensor> = model.export()?.into_iter().collect();
    let tmp = dir.join("model.safetensors.tmp");
    candle_core::safetensors::save(&tensors, &tmp)?;
    std::fs::rename(&tmp, dir.join("model.safetensors")).map_err(|e| file_err(&tmp, e))?;
    write_json(&dir.join("config.json"), &model.config_json())?;
    if source.is_dir() {
        for n in [
            "tokenizer.json",
            "vocab.json",
            "merges.txt",
            "tokenizer_config.json",
            "special_tokens_map.json",
        ] {
            let p = source.join(n);
            if p.exists() {
                std::fs::copy(&p, dir.join(n)).map_err(|e| file_err(&p, e))?;
            }
        }
    } else {
        let p = dir.join("tokenizer.json");
        tok.inner.save(&p, false).map_err(|e| file_err(&p, e))?;
        let name = |id: Option<u32>| id.and_then(|i| tok.inner.id_to_token(i));
        write_json(
            &dir.join("tokenizer_config.json"),
            &json!({
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": name(tok.bos),
                "eos_token": name(tok.eos),
                "add_bos_token": tok.add_bos,
                "model_max_length": model.context(),
            }),
        )?;
    }
    Ok(())
}

/// Runs (or resumes) a fine-tuning run of the model at `model_path` into `out`.
pub fn run(
    config: &FinetuneConfig,
    model_path: &Path,
    out: &Path,
    progress: &dyn TrainProgress,
) -> Result<RunRecord, FinetuneError> {
    config.validate()?;
    let device = Device::Cpu;
    let (mut model, tok, model_identity) = load_model(model_path, &device)?;
    let eos = model.eos().or(tok.eos);
    let encode = |s: &str| -> Result<Vec<u32>, FinetuneError> { Ok(tok.encode(s)?) };
    let block_size = config.block_size.min(model.context());
    let train = read_blocks(&config.train, &config.field, block_size, eos, &encode)?;
    let eval = read_blocks(&config.eval, &config.field, block_size, eos, &encode)?;
    let bps = config.blocks_per_step();
    if train.blocks.len() < bps {
        return Err(FinetuneError::Data(format!(
            "{} blocks of {block_size} tokens in the training data, fewer than one step's {bps}: give more text or lower --batch-tokens",
            train.blocks.len()
        )));
    }
    let steps_per_epoch = train.blocks.len() / bps;
    let total = (steps_per_epoch * config.epochs).min(config.max_steps.unwrap_or(usize::MAX));
    std::fs::create_dir_all(out).map_err(|e| file_err(out, e))?;
    let run_path = out.join("run.json");
    let mut record = RunRecord {
        config: config.clone(),
        model_identity,
        train_sources: train.sources.clone(),
        eval_sources: eval.sources.clone(),
        train_blocks: train.blocks.len(),
        total_steps: total,
        steps_done: 0,
        train_seconds: 0.0,
        train_tokens: 0,
        eval: Vec::new(),
        losses: Vec::new(),
        finished: false,
        detox_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    if run_path.exists() {
        let prev: RunRecord = serde_json::from_str(
            &std::fs::read_to_string(&run_path).map_err(|e| file_err(&run_path, e))?,
        )
        .map_err(|e| file_err(&run_path, format!("not a detox finetune run.json: {e}")))?;
        if prev.config != record.config
            || prev.train_sources != record.train_sources
            || prev.model_identity != record.model_identity
        {
            return Err(FinetuneError::Settings(format!(
                "{} holds a run with other settings, data or model; use another --out",
                out.display()
            )));
        }
    }
    if let Some(r) = config.lora_rank {
        add_lora(
            model.as_mut(),
            r,
            config.lora_alpha,
            &mut lora_init(config.seed),
        )?;
    }
    let vars = trainable(model.as_ref());
    let lora = config.lora_rank.is_some();
    let mut opt = AdamW::new(
        vars.iter()
            .map(|(n, v)| (n.clone(), v.clone(), lora || !no_decay(n)))
            .collect(),
        config.adamw,
    )?;
    let start = load_checkpoint(out, &vars, &mut opt, &mut record)?.unwrap_or(0);
    if start > 0 {
        progress.message(&format!(
            "resuming {} at step {start} of {total}",
            out.display()
        ));
    }
    progress.start(start, total);
    let only: Vec<Var> = vars.iter().map(|(_, v)| v.clone()).collect();
    let t0 = Instant::now();
    let (seconds_before, tokens_before) = (record.train_seconds, record.train_tokens);
    let mut tokens_done = 0usize;
    let mut order = (usize::MAX, Vec::new());
    for s in start..total {
        let epoch = s / steps_per_epoch;
        if order.0 != epoch {
            order = (epoch, epoch_order(train.blocks.len(), config.seed, epoch));
        }
        let within = s % steps_per_epoch;
        let picked: Vec<&Vec<u32>> = order.1[within * bps..(within + 1) * bps]
            .iter()
            .map(|&i| &train.blocks[i])
            .collect();
        let micro: Vec<Tensor> = picked
            .chunks(config.micro_batch)
            .map(|c| batch_tensor(c, &device))
            .collect::<candle_core::Result<_>>()?;
        let lr = config.lr * cosine_factor(s, config.warmup_steps, total);
        let st = step(
            model.as_ref(),
            &mut opt,
            &only,
            &micro,
            lr,
            config.max_grad_norm,
        )?;
        if !st.applied {
            return Err(FinetuneError::Diverged {
                step: s + 1,
                value: st.loss,
                kept: s - s % config.checkpoint_every.max(1),
            });
        }
        tokens_done += st.tokens;
        record.train_seconds = seconds_before + t0.elapsed().as_secs_f64();
        record.train_tokens = tokens_before + tokens_done;
        record.losses.push(st.loss);
        progress.step(
            s + 1,
            st.loss,
            tokens_done as f64 / t0.elapsed().as_secs_f64().max(1e-9),
        );
        let end_of_epoch = (s + 1) % steps_per_epoch == 0 || s + 1 == total;
        if end_of_epoch && !eval.blocks.is_empty() {
            let loss = evaluate(model.as_ref(), &eval, config.micro_batch, &device)?;
            progress.message(&format!(
                "step {}: eval loss {loss:.4}, perplexity {:.2}",
                s + 1,
                loss.exp()
            ));
            record.eval.push(EvalPoint {
                step: s + 1,
                loss,
                perplexity: loss.exp(),
            });
        }
        if (s + 1) % config.checkpoint_every == 0 || s + 1 == total {
            save_checkpoint(out, &vars, &opt, s + 1, &record)?;
            record.steps_done = s + 1;
            write_json(&run_path, &record)?;
        }
    }
    record.steps_done = total;
    write_model(out, model.as_ref(), &tok, model_path)?;
    record.finished = true;
    write_json(&run_path, &record)?;
    Ok(record)
}
