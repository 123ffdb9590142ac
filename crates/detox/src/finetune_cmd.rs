//! `detox finetune`: train a language model on chosen text (full or LoRA), resumable.

use anyhow::{Context, Result};
use clap::Args;
use detox_finetune::optim::AdamWConfig;
use detox_finetune::train::{self, FinetuneConfig, TrainProgress};
use indicatif::ProgressBar;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct FinetuneArgs {
    /// The model: a registry name (`smollm2`), a llama-architecture GGUF file (dequantized to
    /// f32 for training) or a GPT-2 folder.
    #[arg(long)]
    pub model: String,

    /// Training text: JSONL files (the text under --field), text files (a document per line)
    /// or folders of them (e.g. a filtered corpus's kept/ side).
    #[arg(long, required = true, num_args = 1.., value_name = "FILE")]
    pub train: Vec<PathBuf>,

    /// Held-out text: its loss and perplexity are measured after each epoch.
    #[arg(long, num_args = 1.., value_name = "FILE")]
    pub eval: Vec<PathBuf>,

    /// The run folder: run.json, checkpoint/, and at the end the model (config.json,
    /// model.safetensors, tokenizer). The same command resumes a killed run.
    #[arg(long)]
    pub out: PathBuf,

    /// The JSONL field (dotted paths allowed) holding the text.
    #[arg(long, default_value = "text")]
    pub field: String,

    /// Tokens per training block (DExperts: 128); documents are joined with the end-of-text
    /// token and cut into blocks.
    #[arg(long, default_value_t = 128)]
    pub block_size: usize,

    /// Tokens per optimizer step (gradients accumulated over micro-batches).
    #[arg(long, default_value_t = 2048)]
    pub batch_tokens: usize,

    /// Blocks per forward pass.
    #[arg(long, default_value_t = 4)]
    pub micro_batch: usize,

    /// Passes over the training text.
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,

    /// Stop after this many optimizer steps.
    #[arg(long)]
    pub max_steps: Option<usize>,

    /// Peak learning rate (LoRA usually wants about 1e-4 to 1e-3, full fine-tuning 1e-5 to 5e-5).
    #[arg(long, default_value_t = 5e-5)]
    pub lr: f64,

    /// Warm-up steps, then a half cosine down to 0.
    #[arg(long, default_value_t = 0)]
    pub warmup_steps: usize,

    /// AdamW's decoupled weight decay (not on biases and norm weights).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,

    /// Clip gradients to this global L2 norm (0: no clipping).
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,

    /// Seed of the block order and the LoRA initialisation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Train LoRA adapters of this rank on the attention and MLP projections (merged into the
    /// saved weights) instead of every weight.
    #[arg(long)]
    pub lora_rank: Option<usize>,

    /// LoRA alpha (the update is scaled by alpha / rank).
    #[arg(long, default_value_t = 16.0)]
    pub lora_alpha: f64,

    /// Steps between checkpoints.
    #[arg(long, default_value_t = 50)]
    pub checkpoint_every: usize,

    /// Compute threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

struct Bar(ProgressBar);

impl TrainProgress for Bar {
    fn start(&self, done: usize, total: usize) {
        self.0.set_length(total as u64);
        self.0.set_position(done as u64);
        self.0.reset_eta();
    }
    fn step(&self, step: usize, loss: f64, tokens_per_sec: f64) {
        self.0.set_position(step as u64);
        self.0
            .set_message(format!("loss {loss:.4}, {tokens_per_sec:.0} tokens/s"));
    }
    fn message(&self, m: &str) {
        // Printed also where stderr is not a terminal (the bar then draws nothing).
        self.0.suspend(|| eprintln!("detox: {m}"));
    }
}

pub fn run(args: FinetuneArgs, offline: bool) -> Result<ExitCode> {
    detox_spec::configure_threads(args.threads);
    let hub = detox_hub::Hub::from_env();
    let pull = detox_hub::PullOptions {
        offline,
        ..Default::default()
    };
    let path = hub.resolve(&args.model, &pull, &|m: &str| eprintln!("detox: {m}"))?;
    let config = FinetuneConfig {
        model: args.model.clone(),
        train: args.train.clone(),
        eval: args.eval.clone(),
        field: args.field.clone(),
        block_size: args.block_size,
        batch_tokens: args.batch_tokens,
        micro_batch: args.micro_batch,
        epochs: args.epochs,
        max_steps: args.max_steps,
        lr: args.lr,
        warmup_steps: args.warmup_steps,
        adamw: AdamWConfig {
            weight_decay: args.weight_decay,
            ..Default::default()
        },
        max_grad_norm: (args.max_grad_norm > 0.0).then_some(args.max_grad_norm),
        seed: args.seed,
        lora_rank: args.lora_rank,
        lora_alpha: args.lora_alpha,
        checkpoint_every: args.checkpoint_every,
    };
    let bar = Bar(crate::progress::bar(
        None,
        "{spinner} training [{bar:30}] {pos}/{len} steps, {msg}, eta {eta}",
    ));
    let record = train::run(&config, &path, &args.out, &bar)
        .with_context(|| format!("fine-tuning {} into {}", args.model, args.out.display()))?;
    bar.0.finish_and_clear();
    let last = record.losses.last().copied().unwrap_or(f64::NAN);
    eprintln!(
        "detox: trained {} steps on {} blocks of {} tokens; last loss {last:.4}",
        record.steps_done, record.train_blocks, args.block_size
    );
    for e in &record.eval {
        eprintln!(
            "detox: eval after step {}: loss {:.4}, perplexity {:.2}",
            e.step, e.loss, e.perplexity
        );
    }
    println!(
        "model: {} (config.json, model.safetensors, tokenizer; run.json); evaluate it with `detox eval --model {}`",
        args.out.display(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
